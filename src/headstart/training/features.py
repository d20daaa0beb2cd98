"""Frozen-backbone features embedded once per item and cached on disk, whatever the modality.

    feats, info = cached_features(compute, spec, ds, size, cache_dir, dtype="float32-bnfold")

The cache key covers the backbone (name, source, arch), the preprocessing (size, crop, mean, std), the pass's
variant (dtype, BatchNorm folding, which rounds differently, input padding) and every item's content hash, so a
changed file or a different preprocessing can never reuse stale features.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np

from headstart.core.errors import DamagedFile
from headstart.core.io import atomic_write_bytes, read_json, write_json


def cache_key(spec, size: int, hashes: list[str], dtype: str) -> str:
    h = hashlib.sha1(json.dumps([spec.name, spec.source, spec.arch, size, spec.crop_pct, list(spec.mean),
                                 list(spec.std), dtype]).encode())
    for d in hashes:
        h.update(d.encode())
    return h.hexdigest()[:24]


def cached_features(compute, spec, ds, size: int, cache_dir: str | Path, dtype: str = "float32",
                    force: bool = False) -> tuple[np.ndarray, dict]:
    """(features for every item of ds, info); `compute()` embeds on a miss. info: cached (bool) and the seconds /
    CPU seconds the extraction took when it was computed (kept beside the cache, so cost accounting stays honest
    when a later run reuses the features)."""
    path = Path(cache_dir) / f"features-{cache_key(spec, size, ds.hashes, dtype)}.npy"
    meta = path.with_suffix(".json")
    if path.exists() and not force:
        try:
            feats = np.load(path)
            info = read_json(meta) if meta.exists() else {}
        except (ValueError, OSError, EOFError, DamagedFile):    # a damaged cache entry: computed again
            feats = None
        if feats is not None and feats.shape[0] == len(ds):
            return feats, {**info, "cached": True}
    t0, c0 = time.perf_counter(), time.process_time()
    feats = compute()
    info = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    buf = io.BytesIO()
    np.save(buf, feats)
    atomic_write_bytes(path, buf.getvalue())
    write_json(meta, info)
    return feats, {**info, "cached": False}
