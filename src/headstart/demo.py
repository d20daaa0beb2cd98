"""The embedded default: the full workflow on scikit-learn's bundled 8x8 digits, no downloads needed.

    headstart demo            # writes runs/demo/data (PNG folders) and runs/demo (the experiment)

A low-label setting: `per_class` training images per digit, a fixed held-out test set of 40 per digit.
Digits are far from ImageNet photos, so this is an honest test of whether transfer still wins with few labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from headstart.config import RunConfig

TEST_PER_CLASS = 40
DEMO_SIZE = 64        # digits are 8x8: 64 px keeps the demo a few minutes on 2 CPU cores


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


def run_demo(out: str = "runs/demo", per_class: int = 15, progress=None, log=print) -> dict:
    from headstart.experiment import run_experiment
    data = write_digits(Path(out) / "data" / f"digits-{per_class}-per-class", per_class)
    cfg = RunConfig(data=str(data), out=str(Path(out) / f"run-{per_class}-per-class"), image_size=DEMO_SIZE,
                    augment="crop", epochs=12, patience=4, batch_size=32)
    log(f"demo: sklearn digits, {per_class} labelled images per digit, test {TEST_PER_CLASS} per digit, "
        f"{DEMO_SIZE} px")
    return run_experiment(cfg, progress=progress, log=log)
