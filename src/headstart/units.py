"""One unit of work = one (strategy, seed) on the shared split; it writes its own folder and result.json last.

A unit's result.json is the commit point: it is written atomically after the weights and metrics, so a unit
either counts as finished (and is never retrained) or runs again from the start.
"""
from __future__ import annotations

import contextlib
import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headstart.io import atomic_write_bytes, write_json


@dataclass
class Context:
    cfg: object
    spec: object
    size: int
    ds: object
    split: dict
    run_dir: Path
    fabric: object
    cache_dir: Path
    precision: str = "32-true"          # the run-wide Fabric's precision (a trained unit may use its own)
    progress: object = None
    log: object = print
    modality: object = None
    modality_stats: dict = field(default_factory=dict)
    tokens: list | None = None          # text: token ids per item
    _feats: np.ndarray | None = None
    _probe: object = None
    timings: dict = field(default_factory=dict)


def features(ctx: Context, observe=None) -> np.ndarray:
    """Frozen pretrained features for every item (cached on disk, computed at most once per process).

    observe(model) -> context manager: forces a fresh pass with it active (e.g. BatchNorm statistics hooks)."""
    if ctx._feats is None or observe is not None:
        from headstart.backbones import create_backbone
        from headstart.bnfold import fold_pairs, folded_batchnorm
        from headstart.features import cached_features
        t0 = time.perf_counter()
        model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes))
        model = model.to(ctx.fabric.device)      # the frozen pass runs on the run's device (a GPU when there is one)
        task = ctx.progress.add_task("embedding (frozen backbone)", total=len(ctx.ds)) if ctx.progress else None
        tick = (lambda n: ctx.progress.advance(task, n)) if task is not None else None
        dtype = ctx.modality.feature_dtype(ctx) if hasattr(ctx.modality, "feature_dtype") else "float32"
        # BatchNorm folded into the convolutions: 1.7x faster; it rounds differently, hence its own cache key
        fold = ctx.cfg.fold_batchnorm and bool(fold_pairs(model))
        variant = dtype + ("-pad30s" if getattr(ctx.cfg, "pad_to_30s", False) else "") + ("-bnfold" if fold else "")
        ctx.timings["features_dtype"] = dtype
        def compute():   # BatchNorm hooks see the folded layers' outputs and account for them (shift.py)
            with folded_batchnorm(model, fold), observe(model) if observe else contextlib.nullcontext():
                return ctx.modality.embed(ctx, model, tick)
        ctx._feats, info = cached_features(compute, ctx.spec, ctx.ds, ctx.size, ctx.cache_dir, dtype=variant,
                                           force=observe is not None)
        if task is not None:
            ctx.progress.update(task, completed=len(ctx.ds))
        ctx.timings["features_seconds"] = time.perf_counter() - t0
        ctx.timings["features_cached"] = info["cached"]
        ctx.timings["features_compute"] = {k: info.get(k) for k in ("seconds", "cpu_seconds")}
    return ctx._feats


def probe(ctx: Context):
    if ctx._probe is None:
        from headstart.probe import fit_probe
        t0 = time.perf_counter()
        ctx._probe = fit_probe(features(ctx), ctx.ds.labels, ctx.split, ctx.cfg.probe_cs, len(ctx.ds.classes))
        ctx.timings["probe_fit_seconds"] = time.perf_counter() - t0
    return ctx._probe


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    cols = list(rows[0]) if rows else []
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def _save_weights(path: Path, tensors: dict) -> None:
    from safetensors.torch import save
    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))


def run_unit(ctx: Context, strategy: str, seed: int) -> dict:
    from headstart.io import inside
    unit_dir = inside(ctx.run_dir, strategy, f"seed{seed}")
    unit_dir.mkdir(parents=True, exist_ok=True)
    from headstart.costs import Meter, unit_compute
    meter = Meter()
    model, no_features_yet = None, ctx._feats is None
    if strategy == "linear-probe":
        res = _run_probe(ctx, unit_dir, seed)
    elif strategy == "classic":
        res = _run_classic(ctx, unit_dir, seed)
    else:
        from headstart.train import TrainingDiverged
        try:
            res, model = _run_trained(ctx, strategy, unit_dir, seed)
        except TrainingDiverged as e:
            ctx.log(f"{strategy} seed {seed} stopped: {e}; the other arms go on")
            res = {"failed": str(e)}
    usage = meter.stop()
    if "failed" not in res:
        computed_here = no_features_yet and ctx._feats is not None and not ctx.timings.get("features_cached")
        res["compute"] = unit_compute(ctx, strategy, usage, model, res.get("epochs_run", 0), computed_here,
                                      (res.get("trunk_cache") or {}).get("flops_train"))
    res.update(strategy=strategy, seed=seed, wall_seconds=usage["wall_seconds"],
               n_train=len(ctx.split["train"]))
    if ctx.fabric.is_global_zero:
        write_json(unit_dir / "result.json", res)
    return res


def _run_probe(ctx: Context, unit_dir: Path, seed: int) -> dict:
    import torch
    feats = features(ctx)
    p = probe(ctx)
    if ctx.fabric.is_global_zero:
        _write_csv(unit_dir / "metrics.csv", p.sweep)
        _save_weights(unit_dir / "weights.safetensors", {"weight": torch.from_numpy(p.weight),
                                                         "bias": torch.from_numpy(p.bias)})
    test_probs = _softmax(p.logits(feats[ctx.split["test"]]))
    n_feat = p.weight.size
    return {"val_loss": p.val_loss, "val_acc": p.val_acc, "test_probs": np.round(test_probs, 6).tolist(),
            "history": p.sweep, "epochs_run": 0, "epoch_budget": 0, "stopped_early": False, "overfit": False,
            "train_seconds": ctx.timings.get("features_seconds", 0) + ctx.timings.get("probe_fit_seconds", 0),
            "features_seconds": ctx.timings.get("features_seconds", 0), "features_cached":
                ctx.timings.get("features_cached", False), "trainable_params": int(n_feat + p.bias.size),
            "total_params": int(n_feat + p.bias.size + _backbone_params(ctx)),
            "policy": {"strategy": "linear-probe", "C": p.C, "C_grid": ctx.cfg.probe_cs,
                       "chosen_by": "validation log-loss; refit on train+val",
                       "bn_policy": "frozen (eval-mode backbone)",
                       "features": f"centre crop, {ctx.timings.get('features_dtype', 'float32')}, cached"}}


def _backbone_params(ctx: Context) -> int:
    from headstart.backbones import create_backbone
    m, _ = create_backbone(ctx.cfg.backbone, 0, pretrained=False)
    return sum(p.numel() for p in m.parameters())


def _run_classic(ctx: Context, unit_dir: Path, seed: int) -> dict:
    """The from-scratch baseline practitioners actually use (text: TF-IDF + logistic regression); C on val."""
    from sklearn.metrics import log_loss
    t0 = time.perf_counter()
    items, y = ctx.modality.classic_inputs(ctx), np.asarray(ctx.ds.labels)
    pick = lambda idx: [items[i] for i in idx]  # noqa: E731
    tr, va, te = ctx.split["train"], ctx.split["val"], ctx.split["test"]
    labels = list(range(len(ctx.ds.classes)))
    sweep, best = [], None
    for C in ctx.cfg.probe_cs:
        pipe = ctx.modality.classic_pipeline(C, seed).fit(pick(tr), y[tr])
        pv = _full_probs(pipe, pick(va), len(labels))
        row = {"C": C, "train_acc": float((pipe.predict(pick(tr)) == y[tr]).mean()),
               "val_loss": float(log_loss(y[va], pv, labels=labels)), "val_acc": float((pv.argmax(1) == y[va]).mean())}
        sweep.append(row)
        if best is None or row["val_loss"] < best["val_loss"]:
            best = row
    pipe = ctx.modality.classic_pipeline(best["C"], seed).fit(pick(tr + va), y[tr + va])
    test_probs = _full_probs(pipe, pick(te), len(labels))
    if ctx.fabric.is_global_zero:
        _write_csv(unit_dir / "metrics.csv", sweep)
    return {"val_loss": best["val_loss"], "val_acc": best["val_acc"], "test_probs": np.round(test_probs, 6).tolist(),
            "history": sweep, "epochs_run": 0, "epoch_budget": 0, "stopped_early": False, "overfit": False,
            "train_seconds": time.perf_counter() - t0, "trainable_params": int(pipe[-1].coef_.size),
            "total_params": int(pipe[-1].coef_.size + pipe[-1].intercept_.size),
            "policy": {"strategy": "classic", "C": best["C"], "C_grid": ctx.cfg.probe_cs,
                       "chosen_by": "validation log-loss; refit on train+val", "pretrained": False,
                       "features": (ctx.modality.classic_pipeline.__doc__ or "").strip().split(":")[0]}}


def _full_probs(pipe, x, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class (a class missing from training data gets 0)."""
    p = np.zeros((len(x), n_classes))
    p[:, pipe.classes_] = pipe.predict_proba(x)
    return p


def build_model(ctx: Context, strategy: str, seed: int = 0):
    """The network a trained strategy starts from (pretrained or random), with the probe's head for LP-FT.
    Seeded first, so a scratch arm's random initialisation is the same for the same seed."""
    import torch

    from headstart.backbones import create_backbone
    from headstart.strategies import STRATEGIES

    strat = STRATEGIES[strategy](ctx.cfg)
    ctx.fabric.seed_everything(seed, verbose=False)
    model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes), pretrained=strat.pretrained)
    if strat.uses_probe_head:
        p = probe(ctx)
        head = model.get_classifier()
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(p.train_weight))
            head.bias.copy_(torch.from_numpy(p.train_bias))
    return model, strat


def _run_trained(ctx: Context, strategy: str, unit_dir: Path, seed: int) -> dict:
    import torch

    from headstart.train import fit

    from headstart.device import unit_fabric
    model, strat = build_model(ctx, strategy, seed)
    fabric, precision = unit_fabric(ctx)
    model = model.to(fabric.device)         # before the trunk cache, so its frozen pass runs on the device too
    if fabric.device.type == "cuda":        # NHWC tensor-core kernels (no gain on the CPU here)
        model = model.to(memory_format=torch.channels_last)
    cfg = ctx.cfg
    checkpointing = not strat.pretrained and hasattr(model, "blocks") and _needs_checkpointing(cfg, fabric)
    if checkpointing:   # whole network trains: recompute the large early activations instead of storing them
        _checkpoint_early_stages(model, 2)
    train_ds = ctx.modality.dataset(ctx, ctx.split["train"], train=True)
    val_ds = ctx.modality.dataset(ctx, ctx.split["val"])
    from headstart.bnfold import folded_batchnorm
    from headstart.trunk_cache import for_unit
    batch_fn, cache = ctx.modality.batch_fn(ctx), for_unit(ctx, model, strat)
    t0 = time.perf_counter()
    # eval-mode BatchNorms (frozen statistics) run folded into their convolutions: same maths, one pass less
    with folded_batchnorm(model, cfg.fold_batchnorm) as folded:
        with cache or contextlib.nullcontext() as ct:
            if ct is not None:     # only the trainable top runs each epoch, on stored views of the frozen trunk
                train_ds, val_ds, batch_fn = ct.train_ds, ct.val_ds, ct.batch_fn
                cached = {"views": ct.views, "first_trained_block": ct.k, "seconds": time.perf_counter() - t0,
                          "dtype": "trunk bfloat16, top float32" if ct.bf16 else "float32"}
            race = race_check(ctx, strat, seed)
            res = fit(fabric, model, strat, train_ds, val_ds, batch_fn=batch_fn,
                      max_epochs=strat.max_epochs(), patience=strat.patience(), min_epochs=strat.min_epochs(),
                      batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, seed=seed,
                      num_workers=cfg.num_workers, progress=ctx.progress, label=f"{strategy} (seed {seed})",
                      stop_check=race)
            if ct is not None:
                cached["flops_train"] = ct.flops(res.epochs_run)
        train_seconds = time.perf_counter() - t0
        trainable = max(h["trainable_params"] for h in res.history)
        if ctx.fabric.is_global_zero:   # under DDP every rank holds identical weights; rank 0 writes
            _write_csv(unit_dir / "metrics.csv", [{k: v for k, v in h.items() if k != "lr"} for h in res.history])
            _save_weights(unit_dir / "weights.safetensors", model.state_dict())
        test_probs = predict_probs(model, ctx, ctx.split["test"])
    best = res.best()
    policy = strat.describe()
    for e in res.events:
        ctx.log(f"{strategy} seed {seed}: {e}")
    racing = race.last if race is not None else None
    if res.stopped_by is not None:
        ctx.log(f"{strategy} seed {seed}: {res.stopped_by['message']} (bounded, not final; --full-scratch trains "
                "the whole budget)")
    return {"val_loss": best["val_loss"], "val_acc": best["val_acc"], "test_probs": np.round(test_probs, 6).tolist(),
            "history": res.history, "best_epoch": res.best_epoch, "start_val": res.start_val,
            "epochs_run": res.epochs_run,
            "epoch_budget": strat.max_epochs(), "stopped_early": res.stopped_early, "overfit": res.overfit,
            "events": res.events, "train_seconds": train_seconds, "trainable_params": int(trainable),
            "total_params": int(sum(p.numel() for p in model.parameters())), "policy": policy,
            "augment": cfg.augment, "grad_checkpointing": checkpointing, "torch_threads": torch.get_num_threads(),
            "trunk_cache": cached if cache is not None else None, "batchnorm_folded_pairs": folded,
            "precision": precision, "racing": racing}, model


class _Race:
    """stop_check for the training loop: racing a from-scratch arm against the best finished transfer arm of the same
    seed (read from its result.json at every epoch, so a rival finishing in a parallel worker counts from then on)."""

    def __init__(self, ctx, budget: int, seed: int):
        self.ctx, self.budget, self.seed, self.last = ctx, budget, seed, None
        val = [ctx.ds.labels[i] for i in ctx.split["val"]]
        self.n_val, self.chance = len(val), max(val.count(c) for c in set(val)) / len(val)   # majority-class rate

    def rival(self):
        from headstart.strategies import STRATEGIES
        done = [(r["val_acc"], s) for s, cls in STRATEGIES.items() if cls.transfer
                for r in [unit_result(self.ctx.run_dir, s, self.seed)] if r and not r.get("failed")]
        return max(done) if done else (None, None)

    def __call__(self, history: list[dict]):
        from headstart.racing import decide
        acc, name = self.rival()
        d = decide([h["val_acc"] for h in history], self.budget, acc, self.ctx.cfg.race_margin, name,
                   chance=self.chance, n_val=self.n_val)
        self.last = d.to_dict()
        return self.last if d.stop else None


def race_check(ctx, strat, seed: int):
    """The racing stop_check for a scratch arm (None: transfer arms, or --full-scratch)."""
    if strat.pretrained or ctx.cfg.full_scratch:
        return None
    return _Race(ctx, strat.max_epochs(), seed)


LOW_MEMORY_GIB = 8.0


def _needs_checkpointing(cfg, fabric) -> bool:
    """Activation checkpointing for scratch buys memory (4.2 -> 3.6 GiB peak at 224 px) with 40% more epoch time:
    on when asked for, or on a CPU machine with less than LOW_MEMORY_GIB available; never on a GPU (it has the
    memory)."""
    if fabric.device.type != "cpu":
        return False
    from headstart.device import available_gib
    return cfg.grad_checkpointing or available_gib() < LOW_MEMORY_GIB


def _checkpoint_early_stages(model, n: int) -> None:
    """Activation checkpointing for the first n block stages only, where the high-resolution activations are.
    Measured on hymenoptera scratch (224 px, batch 32, 2 CPU cores): n=2 peak 3.56 vs 4.1-4.3 GiB, epoch 9.2 vs
    6.5 s; n=1 saves nothing; timm's whole-network checkpointing doubled the epoch time."""
    import functools

    from torch.utils.checkpoint import checkpoint
    for blk in list(model.blocks)[:n]:
        blk.forward = functools.partial(checkpoint, blk.forward, use_reentrant=False)


def predict_probs(model, ctx: Context, indices) -> np.ndarray:
    import torch
    from torch.utils.data import DataLoader

    from headstart.device import to_device, to_numpy
    model.eval()
    out = []
    ds = ctx.modality.dataset(ctx, indices)
    loader = DataLoader(ds, batch_size=64, collate_fn=getattr(ds, "collate", None))
    batch_fn = ctx.modality.batch_fn(ctx)
    with torch.inference_mode():
        for x, _ in loader:
            out.append(to_numpy(model(batch_fn(to_device(x, model))).float().softmax(1)))
    return np.concatenate(out)


def unit_result(run_dir: Path, strategy: str, seed: int) -> dict | None:
    """A finished unit's result.json, or None while the unit has not finished."""
    from headstart.io import read_json
    path = run_dir / strategy / f"seed{seed}" / "result.json"
    return read_json(path) if path.exists() else None
