"""The shared frozen pass: pretrained features of every item (disk-cached) and the probe fitted on them.

    feats = features(ctx)           # (N, D) float32, computed at most once per process and context family
    p = probe(ctx)                  # stats/probe.Probe: C chosen on val, train-only head and train+val head
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from headstart.pipeline.progress import stage_progress
from headstart.pipeline.state import RunContext
from headstart.models.bnfold import fold_pairs, folded_batchnorm
from headstart.models.factory import create_backbone
from headstart.stats.metrics import MIN_TUNE, class_weights, log_prior
from headstart.stats.probe import Probe, fit_probe
from headstart.training.features import cached_features


def features(ctx: RunContext, observe=None) -> np.ndarray:
    """Frozen pretrained features for every item (cached on disk, computed at most once per process).

    observe(model) -> context manager: forces a fresh pass with it active (e.g. BatchNorm statistics hooks)."""
    if ctx.features is None or observe is not None:
        t0 = time.perf_counter()
        ctx.note(f"frozen features of {len(ctx.ds)} items: reading the cache or computing them")
        model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes))
        model = model.to(ctx.fabric.device)      # the frozen pass runs on the run's device (a GPU when there is one)
        tick = stage_progress(ctx.progress, ctx.log, "embedding (frozen backbone)", len(ctx.ds))
        # BatchNorm folded into the convolutions: 1.7x faster; it rounds differently, hence its own cache key
        fold = ctx.cfg.fold_batchnorm and bool(fold_pairs(model))
        variant = ctx.modality.feature_variant(ctx.inputs) + ("-bnfold" if fold else "")
        ctx.timings.features_dtype = ctx.modality.feature_dtype(ctx.inputs)

        def compute():   # BatchNorm hooks see the folded layers' outputs and account for them (bnshift.py)
            with folded_batchnorm(model, fold), observe(model) if observe else contextlib.nullcontext():
                return ctx.modality.embed(ctx.inputs, model, tick)
        with ctx.stages("frozen pass"):
            ctx.features, info = cached_features(compute, ctx.spec, ctx.ds, ctx.size, ctx.cache_dir, dtype=variant,
                                                 force=observe is not None)
        ctx.timings.features_seconds = time.perf_counter() - t0
        ctx.timings.features_cached = info["cached"]
        ctx.timings.features_compute = {k: info.get(k) for k in ("seconds", "cpu_seconds")}
        ctx.note(f"frozen features: {'read from the cache' if info['cached'] else 'computed'} in "
                 f"{ctx.timings.features_seconds:.0f} s")
    return ctx.features


def train_class_weights(ctx: RunContext) -> np.ndarray | None:
    """The per-class weights n / (k n_c) of this context's training split when the run rebalances, else None."""
    if ctx.decision.rebalance == "none":
        return None
    return class_weights([ctx.ds.labels[i] for i in ctx.split["train"]], len(ctx.ds.classes))


def train_log_prior(ctx: RunContext) -> np.ndarray | None:
    """The log class prior of this context's training split under logit adjustment, else None."""
    if ctx.decision.rebalance != "logit-adjust":
        return None
    return log_prior([ctx.ds.labels[i] for i in ctx.split["train"]], len(ctx.ds.classes))


def probe(ctx: RunContext) -> Probe:
    if ctx.probe is None:
        t0 = time.perf_counter()
        ctx.probe = fit_probe(features(ctx), ctx.ds.labels, ctx.split, ctx.cfg.probe_cs, len(ctx.ds.classes),
                              rebalance=ctx.decision.rebalance,
                              cv_below=MIN_TUNE if ctx.decision.rebalance != "none" else 0)
        ctx.timings.probe_fit_seconds = time.perf_counter() - t0
    return ctx.probe
