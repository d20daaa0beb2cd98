"""Image tensors for training/eval, and frozen-backbone features embedded once and cached on disk.

    x = preprocess(batch_uint8, spec)                      # float, normalised, channels-last
    feats, info = cached_features(compute, spec, ds, size, cache_dir)   # (N, D) float32 for every item of ds

The cache key covers the backbone (name, source, arch), the preprocessing (size, crop, mean, std), the pass's
variant (dtype, BatchNorm folding, which rounds differently) and every file's content hash, so a changed file or a
different preprocessing can never reuse stale features.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from headstart.device import bf16_autocast, native_bf16, to_device, to_numpy
from headstart.io import atomic_write_bytes


def preprocess(x: torch.Tensor, spec) -> torch.Tensor:
    """uint8 NCHW batch -> normalised float NCHW (channels-last memory: faster convolutions on CPU and GPU)."""
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1) * 255
    return ((x.float() - mean) / std).contiguous(memory_format=torch.channels_last)


class ImageTensors(Dataset):
    """Decoded uint8 images -> (uint8 crop, label). Train: random resized crop (+ flip); eval: centre crop."""

    def __init__(self, images, labels, indices, size: int, augment: str = "none", crop_scale: float = 0.35):
        from torchvision.transforms import v2
        self.images, self.labels, self.indices, self.size = images, labels, list(indices), size
        if augment == "none":
            self.tf = v2.CenterCrop(size)
        else:
            ops = [v2.RandomResizedCrop(size, scale=(crop_scale, 1.0), antialias=True)]
            if augment == "crop-flip":
                ops.append(v2.RandomHorizontalFlip())
            self.tf = v2.Compose(ops)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        j = self.indices[i]
        return self.tf(self.images[j]), self.labels[j]


def cache_key(spec, size: int, hashes: list[str], dtype: str) -> str:
    h = hashlib.sha1(json.dumps([spec.name, spec.source, spec.arch, size, spec.crop_pct, list(spec.mean),
                                 list(spec.std), dtype]).encode())
    for d in hashes:
        h.update(d.encode())
    return h.hexdigest()[:24]


def feature_dtype(requested: str, device: str = "cpu") -> str:
    """The dtype of the frozen feature pass: "auto" = bfloat16 on a GPU or on a CPU with native bf16 (AVX512-BF16 /
    AMX: about 2x faster than float32 on hymenoptera at the same probe accuracy, benchmarks/README.md), else float32."""
    if requested != "auto":
        return requested
    return "bfloat16" if native_bf16(device) else "float32"


@torch.inference_mode()
def embed(model, spec, images, size: int, batch_size: int = 64, dtype: str = "float32", progress=None,
          device: str = "cpu") -> np.ndarray:
    """Pre-logit features of every image (centre crop), model in eval mode, channels-last, autocast to `dtype`."""
    from torch.utils.data import DataLoader
    model.eval()
    model = model.to(device=device, memory_format=torch.channels_last)
    loader = DataLoader(ImageTensors(images, [0] * len(images), range(len(images)), size), batch_size=batch_size)
    out = []
    for x, _ in loader:
        with bf16_autocast(device, dtype == "bfloat16"):
            f = model.forward_head(model.forward_features(preprocess(to_device(x, model), spec)), pre_logits=True)
        out.append(to_numpy(f))
        if progress:
            progress(len(x))
    return np.concatenate(out).astype(np.float32)


def cached_features(compute, spec, ds, size: int, cache_dir: str | Path, dtype: str = "float32",
                    force: bool = False) -> tuple[np.ndarray, dict]:
    """(features for every item of ds, info); `compute()` embeds on a miss. info: cached (bool) and the seconds /
    CPU seconds the extraction took when it was computed (kept beside the cache, so cost accounting stays honest
    when a later run reuses the features)."""
    import time

    from headstart.io import read_json, write_json
    path = Path(cache_dir) / f"features-{cache_key(spec, size, ds.hashes, dtype)}.npy"
    meta = path.with_suffix(".json")
    if path.exists() and not force:
        feats = np.load(path)
        if feats.shape[0] == len(ds):
            info = read_json(meta) if meta.exists() else {}
            return feats, {**info, "cached": True}
    t0, c0 = time.perf_counter(), time.process_time()
    feats = compute()
    info = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    import io
    buf = io.BytesIO()
    np.save(buf, feats)
    atomic_write_bytes(path, buf.getvalue())
    write_json(meta, info)
    return feats, {**info, "cached": False}
