"""Compute and cost accounting for every trained unit: FLOPs (counted by torch.utils.flop_counter), wall and CPU
time, peak memory, device hours, energy and money at a configurable price and power.

    meter = Meter(); ...; usage = meter.stop()                        # wall/CPU seconds, peak RSS
    flops = flops_per_item(model, batch_fn(x), train=True)            # forward (+ backward) per item
    money = cost(usage, n_devices=1, accelerator="cpu", price_per_hour=0, watts=0)

Default prices and powers are assumptions printed in every report; pass --price-per-hour / --device-watts to use
your own. CPU: $0.10 per hour and 65 W (a 2-vCPU cloud machine, a desktop CPU package); GPU: $2.50 per hour and
700 W (an H100-class card at cloud list prices, its board power).
"""
from __future__ import annotations

import copy
import resource
import time
from dataclasses import dataclass

from headstart.modalities.base import sample_batch
from headstart.models.device import to_device
from headstart.models.factory import create_backbone
from headstart.training.strategies import STRATEGIES

DEFAULTS = {"cpu": {"price_per_hour": 0.10, "watts": 65.0}, "gpu": {"price_per_hour": 2.50, "watts": 700.0}}


@dataclass
class Meter:
    """Wall and process CPU time between construction and stop(), and the process's peak resident memory."""
    t0: float = 0.0
    c0: float = 0.0

    def __post_init__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def stop(self) -> dict:
        return {"wall_seconds": time.perf_counter() - self.t0, "cpu_seconds": time.process_time() - self.c0,
                "peak_rss_gib": peak_rss_gib_since_exec()}


def flops_per_item(model, x, train: bool) -> float:
    """FLOPs of one forward (train: + backward through what requires grad) divided by the batch size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = to_device(x, model)          # the sample batch is made on the host; the model may live on a GPU
    n = _batch_len(x)
    was_training = model.training
    counter = FlopCounterMode(display=False)
    if train:
        with counter:
            out = model(x)
            if out.requires_grad:
                out.float().sum().backward()
        model.zero_grad(set_to_none=True)
    else:
        model.eval()
        with counter, torch.no_grad():
            model(x)
    model.train(was_training)
    return counter.get_total_flops() / max(1, n)


def _batch_len(x) -> int:
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return len(x)


def device_kind(accelerator: str) -> str:
    import torch
    if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()):
        return "gpu"
    return "cpu"


def cost(wall_seconds: float, kind: str, devices: int = 1, price_per_hour: float = 0.0, watts: float = 0.0) -> dict:
    """Device hours, energy (kWh) and money for `wall_seconds` on `devices` devices of `kind` (cpu|gpu)."""
    price = price_per_hour or DEFAULTS[kind]["price_per_hour"]
    power = watts or DEFAULTS[kind]["watts"]
    hours = wall_seconds / 3600 * devices
    return {"device": kind, "device_hours": hours, "energy_kwh": hours * power / 1000, "money": hours * price,
            "price_per_hour": price, "watts": power}


def inference_flops(ctx, model=None) -> float:
    """FLOPs per item of the deployed network's forward pass (every network arm shares the architecture); model:
    an instance of ctx's backbone already built, else one is."""
    if ctx.timings.inference_flops is None:
        model = model or create_backbone(ctx.cfg.backbone, len(ctx.ds.classes), pretrained=False)[0]
        ctx.timings.inference_flops = flops_per_item(model, sample_batch(ctx, ctx.split["val"], False), False)
    return ctx.timings.inference_flops


def unit_compute(ctx, strategy: str, usage: dict, model=None, epochs_run: int = 0,
                 features_in_unit: bool = False, cached_flops: float | None = None) -> dict:
    """FLOPs, time, memory, energy and money of one finished unit. Training FLOPs count every epoch at the final
    unfreeze state (an upper bound for gradual unfreezing) plus the validation passes."""
    out = dict(usage)
    n_train, n_val = len(ctx.split["train"]), len(ctx.split["val"])
    runner = STRATEGIES[strategy].runner
    if runner == "sklearn":
        out.update(flops_train=None, flops_inference_per_item=None)
    else:
        inf = inference_flops(ctx)
        if runner == "probe":
            train = inf * len(ctx.ds)                       # one frozen pass over every item (cached thereafter)
            # the pass may have run earlier (assessment, or a previous run via the cache): count it here, once
            fc = {} if features_in_unit else ctx.timings.features_compute or {}
            out["wall_seconds"] += fc.get("seconds") or 0.0
            out["cpu_seconds"] += fc.get("cpu_seconds") or 0.0
        elif cached_flops is not None:
            train = cached_flops
        else:
            per_item = flops_per_item(copy.deepcopy(model).train(), sample_batch(ctx, ctx.split["train"], True), True)
            train = per_item * n_train * epochs_run + inf * n_val * (epochs_run + 1)
        out.update(flops_train=train, flops_inference_per_item=inf)
    cfg = ctx.cfg
    out.update(cost(out["wall_seconds"], device_kind(cfg.accelerator), cfg.devices, cfg.price_per_hour,
                    cfg.device_watts))
    return out


def backbone_cost(ctx, memory: bool = False, reps: int = 20) -> dict:
    """What deploying and training ctx's backbone costs, measured on this machine: inference FLOPs per item,
    parameters, weights size, predict latency (one item, the best of `reps` after warm-up: on a shared machine the
    slower repetitions measure the neighbours, not the model), and with memory=True the peak resident memory of one
    training step at the run's batch size, in a fresh process (the run's own process peak only grows, so it cannot
    tell backbones apart)."""
    import torch
    model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes), pretrained=False)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    one = to_device(sample_batch(ctx, ctx.split["val"], False, n=1), model)
    times = []
    with torch.inference_mode():
        for k in range(reps + 5):
            t0 = time.perf_counter()
            model(one)
            if k >= 5:
                times.append(time.perf_counter() - t0)
    out = {"flops_per_item": inference_flops(ctx, model), "params": int(params), "weights_mb": params * 4 / 2 ** 20,
           "latency_ms": 1000 * min(times), "latency_batch": 1,
           "threads": torch.get_num_threads()}
    if memory:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        batch = sample_batch(ctx, ctx.split["train"], True, n=ctx.cfg.batch_size)
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            out["train_step_peak_gib"] = pool.submit(_train_step_peak, ctx.cfg.backbone, len(ctx.ds.classes),
                                                     batch).result()
        out["train_step_batch"] = ctx.cfg.batch_size
    return out


def _train_step_peak(backbone: str, n_classes: int, x) -> float:
    """Peak resident memory (GiB) of this fresh process after one forward + backward of the whole network on x."""
    model, _ = create_backbone(backbone, n_classes, pretrained=False)
    model.train()
    model(x).float().sum().backward()
    return peak_rss_gib_since_exec()


def peak_rss_gib_since_exec() -> float:
    """This process's peak resident memory since it started its program (VmHWM). Not ru_maxrss: Linux carries the
    high-water mark across fork + exec, so a spawned worker would report its parent's memory at the fork."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2 ** 20         # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
