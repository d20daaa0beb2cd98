"""The grid of units (label fraction x strategy x seed) and where it runs: this process, local worker processes
(--jobs N), or a Ray cluster (--executor ray). Every unit writes its own result.json atomically, so an interrupted
grid resumes with the units that are missing.

    tasks = plan(cfg, strategies)                  # [(fraction, strategy, seed)], 1.0 = the main experiment
    run_grid(ctx, tasks)                           # runs what is not finished yet
    curve = summarize_curve(ctx, strategies)       # points, fits, labels needed and saved

Units at fraction f < 1 live in <run>/curve/f<f>/<strategy>/seed<k>; they train on a nested stratified subset of
the training split (val and test never change).
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from headstart.errors import UserError

EXECUTORS = ("local", "process", "ray")


def fractions(cfg) -> list[float]:
    """The label fractions of the grid: --curve plus 1.0 (the main experiment)."""
    fs = sorted({float(f) for f in cfg.curve} | {1.0})
    bad = [f for f in fs if not 0 < f <= 1]
    if bad:
        raise UserError(f"--curve fractions must lie in (0, 1]; got {bad[0]}")
    return fs


def plan(cfg, strategies: list[str]) -> list[tuple[float, str, int]]:
    return [(f, s, seed) for seed in range(cfg.seeds) for f in fractions(cfg) for s in strategies]


def unit_dir(run_dir: Path, fraction: float) -> Path:
    return run_dir if fraction >= 1 else run_dir / "curve" / f"f{fraction:g}"


def sub_context(ctx, fraction: float, seed: int):
    """ctx restricted to a nested `fraction` of the training items (features stay shared)."""
    if fraction >= 1:
        return ctx
    from headstart.curve import nested_subset
    train = nested_subset(ctx.split["train"], ctx.ds.labels, fraction, seed)
    sub = dataclasses.replace(ctx, split={**ctx.split, "train": train}, run_dir=unit_dir(ctx.run_dir, fraction),
                              _probe=None, timings=dict(ctx.timings))
    sub._feats = ctx._feats
    return sub


def run_task(ctx, task) -> dict:
    from headstart import units
    fraction, strategy, seed = task
    sub = sub_context(ctx, fraction, seed)
    done = units.unit_result(sub.run_dir, strategy, seed)
    if done is not None:       # a retried (Ray) task whose unit finished the first time
        return done
    if fraction < 1:
        ctx.log(f"curve: {strategy} seed {seed} on {fraction:g} of the training labels ({len(sub.split['train'])})")
    return units.run_unit(sub, strategy, seed)


def run_grid(ctx, tasks: list) -> None:
    from headstart import units
    todo = [t for t in tasks if units.unit_result(unit_dir(ctx.run_dir, t[0]), t[1], t[2]) is None]
    finished = len(tasks) - len(todo)
    if finished:
        ctx.log(f"{finished} of {len(tasks)} unit(s) already finished: reusing their results")
    cfg = ctx.cfg
    if cfg.executor not in EXECUTORS:
        raise UserError(f"executor {cfg.executor!r} unknown; choose {', '.join(EXECUTORS)}")
    jobs = cfg.jobs
    if jobs <= 0:
        jobs, why = auto_jobs(ctx, todo)
        ctx.log(f"jobs: {jobs} ({why}; --jobs N to choose)")
    if cfg.executor == "local" and jobs <= 1 or not todo:
        for t in todo:
            run_task(ctx, t)
        return
    if any(s in ("linear-probe", "finetune") for _, s, _ in todo):
        units.features(ctx)                     # once here, instead of once per worker
    if cfg.executor == "ray":
        _run_ray(cfg, todo)
    else:
        _run_processes(cfg, todo, max(1, jobs))


def auto_jobs(ctx, todo: list) -> tuple[int, str]:
    """Worker processes for the grid, from the machine: one per core for the scratch units (the long, independent
    ones), as many as memory holds at the modality's measured peak per unit; 1 on a GPU (one device, shared) and
    when fewer than two scratch units are left (a worker's start-up, reloading the data, costs more than it saves).
    benchmarks/parallel_units.py measures, on a given machine, whether side by side beats one after the other."""
    import os

    from headstart.device import available_gib
    heavy = sum(1 for _, s, _ in todo if s == "scratch")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_unit = getattr(ctx.modality, "unit_gib", 4.0)
    free = available_gib()
    by_memory = max(1, int(0.8 * free // per_unit))
    if ctx.fabric.device.type != "cpu":
        return 1, "one GPU: units run one after another on it"
    if heavy < 2:
        return 1, f"{heavy} scratch unit(s) to run: worker start-up would cost more than it saves"
    jobs = max(1, min(heavy, cores, by_memory))
    return jobs, (f"{heavy} scratch units, {cores} cores, {free:.0f} GiB available at ~{per_unit:g} GiB per unit")


def _run_processes(cfg, todo: list, jobs: int) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch
    threads = max(1, torch.get_num_threads() // jobs)          # the cores this process uses, shared out
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        for _ in pool.map(functools.partial(worker, cfg.to_dict()), todo):
            pass


def _run_ray(cfg, todo: list) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'headstart[ray]' (or pip install ray), then "
                        "start or connect to a cluster (ray start --head, or RAY_ADDRESS=...)") from None
    ray.init(ignore_reinit_error=True)
    remote = ray.remote(num_cpus=max(1, cfg.jobs))(worker)
    ray.get([remote.remote(cfg.to_dict(), t) for t in todo])


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=2)
def _worker_context(cfg_json: str):
    import json

    from headstart.config import RunConfig
    from headstart.experiment import prepare, pretraining_checks
    ctx = prepare(RunConfig.from_dict(json.loads(cfg_json)), log=lambda *a: None)
    pretraining_checks(ctx)             # the parent already ran them: reused from disk, and --dedupe applied again
    return ctx


def worker(cfg_dict: dict, task) -> dict:
    """Run one unit in this (worker) process: data loaded once per process and config, the saved split reused."""
    import json
    ctx = _worker_context(json.dumps(cfg_dict, sort_keys=True))
    return run_task(ctx, tuple(task))


def summarize_curve(ctx, strategies: list[str]) -> dict | None:
    """Accuracy per (strategy, label count) over seeds, a power-law fit, labels needed for the target and saved."""
    import numpy as np

    from headstart import units
    from headstart.curve import labels_needed, labels_saved, money, public
    cfg = ctx.cfg
    if not cfg.curve:
        return None
    y = np.asarray(ctx.ds.labels)
    y_test = y[ctx.split["test"]]
    points: dict[str, dict[int, list[float]]] = {}
    bounded = []                  # units that racing stopped: their points are bounds, not final values
    for f, s, seed in plan(cfg, strategies):
        r = units.unit_result(unit_dir(ctx.run_dir, f), s, seed)
        if r is None or r.get("failed"):
            continue
        acc = float((np.asarray(r["test_probs"]).argmax(1) == y_test).mean())
        points.setdefault(s, {}).setdefault(int(r["n_train"]), []).append(acc)
        if (r.get("racing") or {}).get("stop"):
            bounded.append({"strategy": s, "labels": int(r["n_train"]), "seed": seed, "epoch": r["racing"]["epoch"],
                            "budget": r["racing"]["budget"], "bound": r["racing"]["bound"]})
    best_scratch = max((np.mean(v) for v in points.get("scratch", {}).values()), default=None)
    target = cfg.target_metric or best_scratch
    out = {"fractions": fractions(cfg), "target": target,
           "target_source": "--target-metric" if cfg.target_metric else "best scratch score",
           "points": {s: {str(n): v for n, v in sorted(p.items())} for s, p in points.items()},
           "cost_per_label": cfg.cost_per_label, "val_items": len(ctx.split["val"]), "needed": {}, "saved": {},
           "bounded": bounded}
    if target is None:
        return out
    needed = {s: labels_needed(p, target) for s, p in points.items() if len(p) >= 2}
    out["needed"] = {s: public(v) for s, v in needed.items()}
    for s in ("linear-probe", "finetune"):
        if s in needed and "scratch" in needed:
            saved = labels_saved(needed[s], needed["scratch"])
            saved["money"] = money(saved["saved"], cfg.cost_per_label)
            out["saved"][f"{s} vs scratch"] = saved
    return out
