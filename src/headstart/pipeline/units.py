"""One unit of work = one (strategy, seed) on the shared split; it writes its own folder and result.json last.

    res = run_unit(ctx, "finetune", seed=0)        # UnitResult (core/results.py)

A unit's result.json is the commit point: it is written atomically after the weights and metrics, so a unit
either counts as finished (and is never retrained) or runs again from the start. Any exception inside one arm
(a diverged loss, a classic baseline whose TF-IDF vocabulary is empty, ...) is recorded in its result as a one-line
reason, with the traceback in the unit's error.txt; the other arms go on. A UserError (bad input or setup, which
every arm would meet) and an interrupt stop the run as before.
"""
from __future__ import annotations

import os
import socket
import time
import traceback

import numpy as np

from headstart.pipeline.state import RunContext
from headstart.core.errors import UserError, one_line
from headstart.core.io import write_json, write_text
from headstart.core.results import UnitResult, unit_dir, unit_result, write_unit_result
from headstart.pipeline.arms import RUNNERS
from headstart.stats.metrics import LABELS, score
from headstart.stats.racing import decide
from headstart.pipeline.compute import unit_compute
from headstart.training.costs import Meter
from headstart.training.loop import TrainingDiverged
from headstart.training.strategies import STRATEGIES, Strategy

RUNNING = "running.json"     # in a unit folder while a process trains it: pid, node, start time


def run_unit(ctx: RunContext, strategy: str, seed: int) -> UnitResult:
    folder = unit_dir(ctx.run_dir, strategy, seed)
    folder.mkdir(parents=True, exist_ok=True)
    if ctx.fabric.is_global_zero:    # who runs it (a stale one names a worker that died: the unit runs again)
        write_json(folder / RUNNING, {"pid": os.getpid(), "node": socket.gethostname(), "started": time.time()})
    strat = STRATEGIES[strategy](ctx.cfg)
    meter = Meter()
    ctx.note(f"{strategy} seed {seed}: started")
    model, no_features_yet = None, ctx.features is None
    try:
        res, model = RUNNERS[strat.runner](ctx, strat, folder, seed, race_check(ctx, strat, seed))
    except UserError:
        raise
    except Exception as e:          # one arm's failure never sinks the run
        res = UnitResult(failed=str(e) if isinstance(e, TrainingDiverged) else one_line(e))
        if not isinstance(e, TrainingDiverged) and ctx.fabric.is_global_zero:
            write_text(folder / "error.txt", traceback.format_exc())
        verb = "stopped" if isinstance(e, TrainingDiverged) else "failed"
        ctx.log(f"{strategy} seed {seed} {verb}: {res.failed}; the other arms go on"
                + ("" if isinstance(e, TrainingDiverged) else f" (traceback in {folder / 'error.txt'})"))
    usage = meter.stop()
    if res.ok:
        computed_here = no_features_yet and ctx.features is not None and not ctx.timings.features_cached
        res.compute = unit_compute(ctx, strat, usage, model, res.epochs_run, computed_here,
                                   (res.trunk_cache or {}).get("flops_train"), res.details.get("round_items", 0))
    res.strategy, res.seed, res.wall_seconds, res.node = strategy, seed, usage["wall_seconds"], socket.gethostname()
    res.n_train = len(ctx.split["train"])
    if res.ok:
        res.val_score = val_score(ctx, res)
        ctx.note(f"{strategy} seed {seed}: done in {res.wall_seconds:.0f} s (validation {LABELS[ctx.decision.metric]} "
                 f"{100 * res.val_score:.1f}%)")
    if ctx.fabric.is_global_zero:
        write_unit_result(folder, res)
        (folder / RUNNING).unlink(missing_ok=True)
    return res


def val_score(ctx: RunContext, res: UnitResult) -> float:
    """The unit's validation score in the run's decision metric (accuracy where the unit kept no val_probs)."""
    y = [ctx.ds.labels[i] for i in ctx.split["val"]]
    if len(res.val_probs) != len(y):
        return float(res.val_acc)
    return score(ctx.decision.metric, y, np.asarray(res.val_probs).argmax(1), len(ctx.ds.classes))


class _Race:
    """stop_check for the training loop: racing a from-scratch arm against the best finished transfer arm of the same
    seed (read from its result.json at every epoch, so a rival finishing in a parallel worker counts from then on)."""

    def __init__(self, ctx: RunContext, budget: int, seed: int):
        self.ctx, self.budget, self.seed, self.last = ctx, budget, seed, None
        val = [ctx.ds.labels[i] for i in ctx.split["val"]]
        # chance level: what answering the majority class for every item scores in the decision metric
        self.n_val, self.metric = len(val), LABELS[ctx.decision.metric]
        self.chance = score(ctx.decision.metric, val, [max(set(val), key=val.count)] * len(val), len(ctx.ds.classes))

    def rival(self):
        done = [(r.val_score if r.val_score is not None else r.val_acc, s) for s, cls in STRATEGIES.items()
                if cls.transfer for r in [unit_result(self.ctx.run_dir, s, self.seed)] if r and r.ok]
        return max(done) if done else (None, None)

    def __call__(self, history: list[dict]):
        acc, name = self.rival()
        margin = self.ctx.cfg.race_margin
        if history and history[-1].get("input_size", self.ctx.size) < self.ctx.size:
            margin *= 2     # small-input epochs understate what the full-size half of the budget would reach
        d = decide([h.get("val_score", h["val_acc"]) for h in history], self.budget, acc, margin, name,
                   chance=self.chance, n_val=self.n_val, metric=self.metric)
        self.last = d.to_dict()
        return self.last if d.stop else None


def race_check(ctx: RunContext, strat: Strategy, seed: int):
    """The racing stop_check for an arm the strategy lets race (scratch); None otherwise, or with --full-scratch."""
    if not strat.raced or ctx.cfg.full_scratch:
        return None
    return _Race(ctx, strat.max_epochs(), seed)
