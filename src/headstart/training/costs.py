"""Compute and cost accounting for every trained unit: FLOPs (counted by torch.utils.flop_counter), wall and CPU
time, peak memory, device hours, energy and money at a configurable price and power.

    meter = Meter(); ...; usage = meter.stop()                        # wall/CPU seconds, peak RSS
    flops = flops_per_item(model, batch_fn(x), train=True)            # forward (+ backward) per item
    money = cost(usage, n_devices=1, accelerator="cpu", price_per_hour=0, watts=0)

A unit's and a backbone's whole bill (which read the run) are put together in pipeline/compute.py.

Default prices and powers are assumptions printed in every report; pass --price-per-hour / --device-watts to use
your own. CPU: $0.10 per hour and 65 W (a 2-vCPU cloud machine, a desktop CPU package); GPU: $2.50 per hour and
700 W (an H100-class card at cloud list prices, its board power).
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass

from headstart.models.device import to_device
from headstart.models.factory import create_backbone

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
