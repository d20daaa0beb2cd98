"""The device rule, in one place: where tensors live, what precision runs, how results come back to the host.

    x = to_device(batch, model)          # any tensor / dict / list of tensors -> the device of model's parameters
    a = to_numpy(t)                      # detached float copy on the host (safe for CUDA, bf16 and grad tensors)
    prec = resolve_precision(cfg, modality)   # "auto" -> bf16-mixed / 32-true for this hardware and network

Every function that meets a model and data it did not make itself moves the data with to_device, and every tensor
that leaves torch goes through to_numpy: nothing else calls .numpy() on a tensor that may live on a GPU.
tests/test_device.py runs those functions with the model on PyTorch's `meta` device, where a forgotten move or a
direct .numpy() raises, so CI catches this class of bug without a GPU.
"""
from __future__ import annotations

import numpy as np
import torch


def model_device(model) -> torch.device:
    """The device of a model's parameters (or buffers; CPU for a model without either)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def to_device(x, model_or_device):
    """x (tensor, or dict/list/tuple of tensors; other values untouched) on the model's device. Copies to a GPU are
    asynchronous (non_blocking; pinned host memory makes them overlap with compute)."""
    device = torch.device(model_or_device if isinstance(model_or_device, (str, torch.device))
                          else model_device(model_or_device))
    if isinstance(x, torch.Tensor):
        return x if x.device == device else x.to(device, non_blocking=device.type == "cuda")
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, device) for v in x)
    return x


def to_numpy(t, dtype=np.float32) -> np.ndarray:
    """A host copy of any tensor as a numpy array of `dtype` (bf16 has no numpy type: cast first)."""
    if t.device.type == "meta":      # shapes only (tests/test_device.py): no data to copy
        return np.zeros(tuple(t.shape), dtype=dtype)
    return t.detach().to("cpu", torch.float64 if dtype == np.float64 else torch.float32).numpy().astype(dtype,
                                                                                                        copy=False)


def loader_kwargs(device, num_workers: int = 0, streamed: bool = False) -> dict:
    """DataLoader settings for feeding `device`. On the CPU: in-process while the items are in memory (the cores are
    busy with the model); worker processes when they are read from disk per batch (`streamed`: a folder larger
    than the decoded-image budget), so decoding overlaps with compute. On a GPU: worker processes for the per-item
    crops (num_workers 0 = half the cores, at most 8), pinned host memory and kept-alive workers."""
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if torch.device(device).type != "cuda":
        n = num_workers or (min(4, max(1, cores // 2)) if streamed else 0)
        return {"num_workers": n, **({"persistent_workers": True} if n else {})}
    n = num_workers or min(8, max(1, cores // 2))
    return {"num_workers": n, "pin_memory": True, "persistent_workers": n > 0}


def bf16_autocast(device, enabled: bool = True):
    """bf16 autocast on `device` (a device, its name, or a model); a no-op where autocast does not exist (meta)."""
    import contextlib
    if not isinstance(device, (str, torch.device)):
        device = model_device(device)
    kind = torch.device(device).type
    if not enabled or not torch.amp.is_autocast_available(kind):
        return contextlib.nullcontext()
    return torch.autocast(kind, dtype=torch.bfloat16)


def available_gib() -> float:
    """Memory available to new work (MemAvailable), GiB; 8 where /proc/meminfo cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: line.split()[1] for line in f}
        return int(info["MemAvailable"]) / 2 ** 20
    except (OSError, KeyError, ValueError):
        return 8.0


def native_bf16(device: str = "cpu") -> bool:
    """bf16 runs natively here: any CUDA device, or a CPU with AVX512-BF16 / AMX (oneDNN's own check)."""
    if device.startswith("cuda"):
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(cfg, modality=None) -> str:
    """auto: bf16 mixed precision on a CUDA device (tensor cores, half the activation memory). On a CPU with native
    bf16 (AVX512-BF16/AMX), bf16-mixed for the trained units of modalities whose networks measured faster there
    (`modality.cpu_bf16_training`: the text and speech transformers, 1.15-1.75x); float32 otherwise (EfficientNet's
    depthwise convolutions train slower in bf16 on the CPU: benchmarks/README.md). Loss, optimizer state and master
    weights stay float32 either way. modality=None: the run-wide precision (the Fabric every rank shares)."""
    if cfg.precision != "auto":
        return cfg.precision
    gpu = cfg.accelerator in ("cuda", "gpu") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    if gpu:
        return "bf16-mixed"
    cpu_bf16 = modality is not None and getattr(modality, "cpu_bf16_training", False) and native_bf16("cpu")
    return "bf16-mixed" if cpu_bf16 else "32-true"


def unit_fabric(fabric, precision: str, cfg, modality):
    """(fabric, precision) for one trained unit: the run's Fabric (at the run's `precision`), or a single-device one
    at the unit's precision (several devices keep the run's Fabric: every rank must agree)."""
    from lightning.fabric import Fabric
    prec = resolve_precision(cfg, modality)
    if prec == precision or fabric.world_size > 1:
        return fabric, precision
    return Fabric(accelerator=cfg.accelerator, devices=1, precision=prec), prec


