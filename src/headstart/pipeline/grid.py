"""The grid of units (label fraction x strategy x seed) and where it runs: this process, local worker processes
(--jobs N), or a Ray cluster (--executor ray). Every unit writes its own result.json atomically, so an interrupted
grid resumes with the units that are missing.

    tasks = plan(cfg, strategies)                  # [(fraction, strategy, seed)], 1.0 = the main experiment
    run_grid(ctx, tasks)                           # runs what is not finished yet

Units at fraction f < 1 live in <run>/curve/f<f>/<strategy>/seed<k>; they train on a nested stratified subset of
the training split (val and test never change).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing as mp
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from headstart.core.config import RunConfig
from headstart.pipeline.state import RunContext
from headstart.core.errors import UserError
from headstart.core.results import DAMAGED, UnitResult, unit_dir, unit_result
from headstart.core.sections import GridCost
from headstart.models.device import available_gib
from headstart.pipeline.checks import pretraining_checks
from headstart.pipeline.context import build_context
from headstart.pipeline.frozen import features
from headstart.pipeline.ray_grid import run_ray
from headstart.pipeline.units import run_unit
from headstart.stats.curve import nested_subset
from headstart.training.strategies import STRATEGIES


def fractions(cfg: RunConfig) -> list[float]:
    """The label fractions of the grid: --curve plus 1.0 (the main experiment)."""
    fs = sorted({float(f) for f in cfg.curve} | {1.0})
    bad = [f for f in fs if not 0 < f <= 1]
    if bad:
        raise UserError(f"--curve fractions must lie in (0, 1]; got {bad[0]}")
    return fs


def plan(cfg, strategies: list[str]) -> list[tuple[float, str, int]]:
    return [(f, s, seed) for seed in range(cfg.seeds) for f in fractions(cfg) for s in strategies]


def unit_root(run_dir: Path, fraction: float) -> Path:
    """The run folder of a label fraction's units (the run folder itself for 1.0)."""
    return run_dir if fraction >= 1 else run_dir / "curve" / f"f{fraction:g}"


def sub_context(ctx: RunContext, fraction: float, seed: int) -> RunContext:
    """ctx restricted to a nested `fraction` of the training items (features stay shared, the probe refits)."""
    if fraction >= 1:
        return ctx
    train = nested_subset(ctx.split["train"], ctx.ds.labels, fraction, seed)
    return dataclasses.replace(ctx, split={**ctx.split, "train": train}, run_dir=unit_root(ctx.run_dir, fraction),
                               probe=None, timings=dataclasses.replace(ctx.timings))


def run_task(ctx: RunContext, task) -> UnitResult:
    fraction, strategy, seed = task
    sub = sub_context(ctx, fraction, seed)
    done = unit_result(sub.run_dir, strategy, seed)
    if done is not None:       # a retried (Ray) task whose unit finished the first time
        return done
    if fraction < 1:
        ctx.log(f"curve: {strategy} seed {seed} on {fraction:g} of the training labels ({len(sub.split['train'])})")
    return run_unit(sub, strategy, seed)


def run_grid(ctx: RunContext, tasks: list) -> GridCost:
    """Run the units of `tasks` that have not finished; returns how this invocation's units were spread."""
    todo = [t for t in tasks if unit_result(unit_root(ctx.run_dir, t[0]), t[1], t[2]) is None]
    for p in sorted(ctx.run_dir.rglob(DAMAGED)):
        if not (p.parent / "result.json").exists():
            ctx.log(f"training {p.parent.parent.name} {p.parent.name} again: its result.json was damaged (kept as "
                    f"{p})")
    finished = len(tasks) - len(todo)
    if finished:
        ctx.log(f"{finished} of {len(tasks)} unit(s) already finished: reusing their results")
    cfg = ctx.cfg
    jobs = cfg.jobs
    if jobs <= 0 and cfg.executor != "ray":
        jobs, why = auto_jobs(ctx, todo)
        ctx.log(f"jobs: {jobs} ({why}; --jobs N to choose)")
    t0, retried = time.perf_counter(), 0
    if cfg.executor == "local" and jobs <= 1 or not todo:
        done, executor = [run_task(ctx, t) for t in todo], "local"
    else:
        if any(STRATEGIES[s].needs_features for _, s, _ in todo):
            features(ctx)                           # once here, instead of once per worker
        if cfg.executor == "ray":
            folder = lambda t: unit_dir(unit_root(ctx.run_dir, t[0]), t[1], t[2])  # noqa: E731
            (done, retried), executor = run_ray(ctx, todo, worker, unit_line, folder), "ray"
        else:
            done, executor = _run_processes(ctx, todo, max(1, jobs)), "processes"
    return grid_cost(executor, done, time.perf_counter() - t0, retried)


def grid_cost(executor: str, done: list, wall: float, retried: int = 0) -> GridCost:
    """The GridCost of the units in `done` (UnitResults), run in `wall` seconds."""
    return GridCost(executor=executor, units=len(done), wall_seconds=round(wall, 2),
                    unit_seconds=round(sum(r.wall_seconds for r in done), 2),
                    nodes=dict(Counter(r.node or "?" for r in done)), retried=retried)


def unit_line(task, res, k: int, n: int) -> str:
    """One line per finished unit of a parallel grid: what, where, how long, how many are left."""
    fraction, strategy, seed = task
    what = f"{strategy} seed {seed}" + (f" at {fraction:g} of the labels" if fraction < 1 else "")
    how = "failed: " + res.failed if res.failed else f"{res.wall_seconds:.0f} s"
    return f"unit {k} of {n} done: {what} on {res.node or '?'} ({how})"


def auto_jobs(ctx: RunContext, todo: list) -> tuple[int, str]:
    """Worker processes for the grid, from the machine: one per core for the scratch units (the long, independent
    ones), as many as memory holds at the modality's measured peak per unit; 1 on a GPU (one device, shared) and
    when fewer than two scratch units are left (a worker's start-up, reloading the data, costs more than it saves).
    benchmarks/parallel_units.py measures, on a given machine, whether side by side beats one after the other."""
    heavy = sum(1 for _, s, _ in todo if STRATEGIES[s].trains_network and not STRATEGIES[s].pretrained)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_unit = ctx.modality.unit_gib
    free = available_gib()
    by_memory = max(1, int(0.8 * free // per_unit))
    if ctx.fabric.device.type != "cpu":
        return 1, "one GPU: units run one after another on it"
    if heavy < 2:
        return 1, f"{heavy} scratch unit(s) to run: worker start-up would cost more than it saves"
    jobs = max(1, min(heavy, cores, by_memory))
    return jobs, (f"{heavy} scratch units, {cores} cores, {free:.0f} GiB available at ~{per_unit:g} GiB per unit")


def _run_processes(ctx: RunContext, todo: list, jobs: int) -> list[UnitResult]:
    import torch
    threads = max(1, torch.get_num_threads() // jobs)          # the cores this process uses, shared out
    done = []
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(worker, ctx.cfg.to_dict(), t): t for t in todo}
        for fut in as_completed(futures):
            done.append(fut.result())
            ctx.note(unit_line(futures[fut], done[-1], len(done), len(todo)))
    return done


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when its parent dies (a SIGKILLed run must not leave workers training
    and writing results on their own)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)     # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass                                                    # not Linux: workers end with the pool


@functools.lru_cache(maxsize=2)
def _worker_context(cfg_json: str) -> RunContext:
    ctx = build_context(RunConfig.from_dict(json.loads(cfg_json)), log=lambda *a: None, lock=False)
    pretraining_checks(ctx)             # the parent already ran them: reused from disk, and --dedupe applied again
    return ctx


def worker(cfg_dict: dict, task) -> UnitResult:
    """Run one unit in this (worker) process: data loaded once per process and config, the saved split reused."""
    ctx = _worker_context(json.dumps(cfg_dict, sort_keys=True))
    return run_task(ctx, tuple(task))
