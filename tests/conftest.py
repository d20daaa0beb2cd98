"""Shared fixtures: a tiny generated image folder, the shared evaluation data (skips when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    return Path(os.environ.get("HEADSTART_SHARED_DATA", REPO.parent / "shared" / "data"))


def need_shared(name: str) -> Path:
    p = shared_data() / name
    if not p.exists():
        pytest.skip(f"{p} not present (set HEADSTART_SHARED_DATA to the evaluation data)")
    return p


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Session-wide, so module fixtures (which start before function fixtures) never read ~/.cache/headstart."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))
    yield
    mp.undo()


def make_image_folder(root: Path, classes=("cats", "dogs"), per_class=8, size=40, seed=0, extras=True) -> Path:
    """Class-distinguishable synthetic images (colour + stripes); optional RGBA png and a corrupt jpg."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 60, (size, size + 6, 3), dtype=np.uint8)
            a[..., k % 3] += 150
            if k % 2:
                a[::4] = 255
            Image.fromarray(a).save(d / f"img {i}.jpg", quality=90)
    if extras:
        rgba = np.zeros((size, size, 4), dtype=np.uint8)
        rgba[..., 0] = 200
        rgba[..., 3] = 128
        Image.fromarray(rgba, "RGBA").save(root / classes[0] / "alpha.png")
        (root / classes[1] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "imgs")
