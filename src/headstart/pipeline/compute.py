"""What a finished unit and a candidate backbone cost, from the run's state (training/costs.py measures the parts).

    res.compute = unit_compute(ctx, strat, usage, model, epochs_run)   # FLOPs, time, memory, energy, money
    backbone_cost(ctx, memory=True)                                    # FLOPs, params, latency, a step's peak memory
"""
from __future__ import annotations

import copy
import time

from headstart.modalities.base import sample_batch
from headstart.models.device import to_device
from headstart.models.factory import create_backbone
from headstart.pipeline.state import RunContext
from headstart.training.costs import _train_step_peak, cost, device_kind, flops_per_item
from headstart.training.strategies import Strategy


def inference_flops(ctx: RunContext, model=None) -> float:
    """FLOPs per item of the deployed network's forward pass (every network arm shares the architecture); model:
    an instance of ctx's backbone already built, else one is."""
    if ctx.timings.inference_flops is None:
        model = model or create_backbone(ctx.cfg.backbone, len(ctx.ds.classes), pretrained=False)[0]
        ctx.timings.inference_flops = flops_per_item(model, sample_batch(ctx.modality, ctx.inputs, ctx.split["val"], False), False)
    return ctx.timings.inference_flops


def unit_compute(ctx: RunContext, strat: Strategy, usage: dict, model=None, epochs_run: int = 0,
                 features_in_unit: bool = False, cached_flops: float | None = None, epoch_items: int = 0) -> dict:
    """FLOPs, time, memory, energy and money of one finished unit. Training FLOPs count every epoch at the final
    unfreeze state (an upper bound for gradual unfreezing) plus the validation passes; epoch_items: training items
    per epoch when epochs were rounds (else one pass)."""
    out = dict(usage)
    n_train, n_val = len(ctx.split["train"]), len(ctx.split["val"])
    runner = strat.runner
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
            per_item = flops_per_item(copy.deepcopy(model).train(), sample_batch(ctx.modality, ctx.inputs, ctx.split["train"], True), True)
            train = per_item * (epoch_items or n_train) * epochs_run + inf * n_val * (epochs_run + 1)
        out.update(flops_train=train, flops_inference_per_item=inf)
    cfg = ctx.cfg
    out.update(cost(out["wall_seconds"], device_kind(cfg.accelerator), cfg.devices, cfg.price_per_hour,
                    cfg.device_watts))
    return out


def backbone_cost(ctx: RunContext, memory: bool = False, reps: int = 20) -> dict:
    """What deploying and training ctx's backbone costs, measured on this machine: inference FLOPs per item,
    parameters, weights size, predict latency (one item, the best of `reps` after warm-up: on a shared machine the
    slower repetitions measure the neighbours, not the model), and with memory=True the peak resident memory of one
    training step at the run's batch size, in a fresh process (the run's own process peak only grows, so it cannot
    tell backbones apart)."""
    import torch
    model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes), pretrained=False)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    one = to_device(sample_batch(ctx.modality, ctx.inputs, ctx.split["val"], False, n=1), model)
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
        batch = sample_batch(ctx.modality, ctx.inputs, ctx.split["train"], True, n=ctx.cfg.batch_size)
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            out["train_step_peak_gib"] = pool.submit(_train_step_peak, ctx.cfg.backbone, len(ctx.ds.classes),
                                                     batch).result()
        out["train_step_batch"] = ctx.cfg.batch_size
    return out
