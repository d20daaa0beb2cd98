"""The embedded default: the full workflow on scikit-learn's bundled 8x8 digits, no downloads needed.

    headstart demo            # writes runs/demo/data (PNG folders) and runs/demo (the experiment)

Low-label settings: `per_class` labelled images per digit (20 by default, 4 of them carved out for validation),
trained at a quarter, half and all of the training labels (a small learning curve), a held-out test set of 40
per digit.
Digits are far from ImageNet photos, so this is an honest test of whether transfer still wins with few labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from headstart.app.run import run_experiment
from headstart.core.config import RunConfig
from headstart.core.run_results import RunResults

TEST_PER_CLASS = 40
DEMO_SIZE = 96        # digits are 8x8: 96 px keeps the demo about a minute per label budget on 2 CPU cores


def write_digits(folder: Path, per_class: int, seed: int = 0) -> Path:
    """Write a train/ test/ PNG image folder from sklearn's digits (idempotent)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == d))
        for role, chosen in (("train", idx[:per_class]), ("test", idx[per_class: per_class + TEST_PER_CLASS])):
            cdir = folder / role / str(d)
            cdir.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                f = cdir / f"digit{i:04d}.png"
                if not f.exists():
                    px = (255 - digits.images[i] * 255 / 16).astype(np.uint8)   # dark ink on white paper
                    Image.fromarray(px).resize((32, 32), Image.BICUBIC).save(f)
    return folder


def run_demo(out: str = "runs/demo", per_class: int = 20, curve: tuple[float, ...] = (0.25, 0.5),
             progress=None, log=print) -> RunResults:
    """One experiment with a small learning curve: every strategy at `curve` fractions of the labels and at all."""
    data = write_digits(Path(out) / "data" / f"digits-{per_class}-per-class", per_class)
    cfg = RunConfig(data=str(data), out=str(Path(out) / f"run-{per_class}-per-class"), image_size=DEMO_SIZE,
                    augment="crop", crop_scale=0.7, epochs=15, batch_size=32, curve=list(curve))
    log(f"demo: sklearn digits, {per_class} labelled images per digit (val carved from them), test "
        f"{TEST_PER_CLASS} per digit, {DEMO_SIZE} px; learning curve at {', '.join(f'{f:g}' for f in curve)} and 1 "
        "of the training labels")
    return run_experiment(cfg, progress=progress, log=log)
