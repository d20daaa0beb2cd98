"""How each kind of arm runs on the shared split (strategy.runner picks one): a fitted probe, a classic
scikit-learn pipeline, or a network trained by the one loop. Each returns (UnitResult, trained model or None).

    res, model = RUNNERS[strat.runner](ctx, strat, unit_dir, seed, stop_check)
"""
from __future__ import annotations

import contextlib
import csv
import warnings
import functools
import io
import itertools
import time
from pathlib import Path

import numpy as np

from headstart.pipeline.state import RunContext
from headstart.core.io import atomic_write_bytes
from headstart.core.results import UnitResult
from headstart.models.archs import stages
from headstart.models.bnfold import folded_batchnorm
from headstart.models.device import available_gib, loader_kwargs, to_device, to_numpy, unit_fabric
from headstart.models.factory import create_backbone
from headstart.models.weights import save_weights
from headstart.pipeline.frozen import features, probe, train_class_weights, train_log_prior
from headstart.pipeline.progress import EpochLog, rounds_policy
from headstart.stats.evaluate import softmax
from headstart.stats.metrics import MIN_TUNE, class_weights, log_prior, logit_adjusted
from headstart.stats.probe import sweep_sample, thin_validation_folds
from headstart.training.loop import fit, length_order
from headstart.training.strategies import Strategy
from headstart.training.trunk_cache import for_unit

LOW_MEMORY_GIB = 8.0


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    cols = list(rows[0]) if rows else []
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def run_probe(ctx: RunContext, strat: Strategy, unit_dir: Path, seed: int, stop_check=None):
    import torch
    feats = features(ctx)
    p = probe(ctx)
    if ctx.fabric.is_global_zero:
        _write_csv(unit_dir / "metrics.csv", p.sweep)
        save_weights(unit_dir / "weights.safetensors", {"weight": torch.from_numpy(p.weight),
                                                        "bias": torch.from_numpy(p.bias)})
    n_feat = p.weight.size
    t = ctx.timings
    return UnitResult(
        val_loss=p.val_loss, val_acc=p.val_acc, test_probs=np.round(softmax(p.logits(feats[ctx.split["test"]])),
                                                                    6).tolist(),
        val_probs=np.round(softmax(feats[ctx.split["val"]] @ p.train_weight.T + p.train_bias), 6).tolist(),
        history=p.sweep, train_seconds=t.features_seconds + t.probe_fit_seconds,
        trainable_params=int(n_feat + p.bias.size), total_params=int(n_feat + p.bias.size + _backbone_params(ctx)),
        policy={"strategy": strat.name, "C": p.C, "C_grid": ctx.cfg.probe_cs,
                "chosen_by": p.chosen_by, "bn_policy": "frozen (eval-mode backbone)",
                **({"not_converged_at_C": p.not_converged} if p.not_converged else {}),
                "rebalance": ctx.decision.rebalance,
                "features": f"centre crop, {t.features_dtype}, cached"},
        details={"features_seconds": t.features_seconds, "features_cached": t.features_cached}), None


def _backbone_params(ctx: RunContext) -> int:
    m, _ = create_backbone(ctx.cfg.backbone, 0, pretrained=False)
    return sum(p.numel() for p in m.parameters())


CLASSIC_FIT_MAX = 200_000   # the classic arm's final fits use at most this many items (a stratified sample): its
                            # sparse TF-IDF of character n-grams takes ~7 KB per text, 7 GiB at 1M texts


def run_classic(ctx: RunContext, strat: Strategy, unit_dir: Path, seed: int, stop_check=None):
    """The from-scratch baseline practitioners actually use (text: TF-IDF + logistic regression); C on val (by
    cross-validation on train+val when validation is thin for a rare class)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import log_loss
    t0 = time.perf_counter()
    items, y = ctx.modality.classic_inputs(ctx.inputs), np.asarray(ctx.ds.labels)
    pick = lambda idx: [items[i] for i in idx]  # noqa: E731
    tr, va, te = ctx.split["train"], ctx.split["val"], ctx.split["test"]
    k, mode = len(ctx.ds.classes), ctx.decision.rebalance     # the same rebalancing as every other arm
    labels = list(range(k))
    cw = train_class_weights(ctx)           # validation log-loss weights when rebalancing (None: unweighted)

    def fitted(C, idx, pipe=None):           # sample weights reach the pipeline's last step (the classifier)
        pipe = pipe or ctx.modality.classic_pipeline(C, seed)
        last = pipe.steps[-1][0]
        pipe.set_params(**{f"{last}__C": C, f"{last}__warm_start": True})     # the C path, warm-started
        w = {"sample_weight": class_weights(y[idx], k)[y[idx]]} if mode == "class-weights" else {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)     # once in the policy, not once per fit
            pipe.fit(pick(idx), y[idx], **{f"{last}__{n}": v for n, v in w.items()})
        unconverged.extend(C for c in caught if issubclass(c.category, ConvergenceWarning))
        return pipe

    def probs(pipe, idx, fit_idx):           # logit adjustment: the plain fit's probabilities over the prior
        p = _full_probs(pipe, pick(idx), k)
        return logit_adjusted(p, log_prior(y[fit_idx], k)) if mode == "logit-adjust" else p
    wlog = lambda idx, p, w: float(log_loss(y[idx], p, labels=labels,  # noqa: E731
                                            sample_weight=None if w is None else w[y[idx]]))
    # thin validation of a rare class: C by cross-validation on train+val, as the probe does (stats/probe.py)
    folds = thin_validation_folds(y, np.asarray(tr), np.asarray(va), k, MIN_TUNE if mode != "none" else 0, seed)
    sweep, best, pipe, unconverged = [], None, None, []
    cs = sorted(ctx.cfg.probe_cs)           # strong to weak regularisation: each fit starts from the last
    sweep_on = list(sweep_sample(y, np.asarray(tr), seed))    # large data: the sweep on a stratified sample
    for i, C in enumerate(cs):
        t_fit = time.perf_counter()
        pipe = fitted(C, sweep_on, pipe)
        pv = probs(pipe, va, sweep_on)
        _sweep_progress(ctx, i, len(cs), C, time.perf_counter() - t_fit, t0)
        row = {"C": C, "train_acc": float((pipe.predict(pick(sweep_on)) == y[sweep_on]).mean()),
               "val_loss": wlog(va, pv, cw),
               "val_acc": float((pv.argmax(1) == y[va]).mean())}
        if folds:
            row["cv_loss"] = float(np.average([wlog(b, probs(fitted(C, list(a)), b, a), class_weights(y[a], k)) for a, b
                                               in folds], weights=[len(b) for _, b in folds]))
        sweep.append(row)
        if best is None or row.get("cv_loss", row["val_loss"]) < best.get("cv_loss", best["val_loss"]):
            best, best_pv = row, pv
    fit_tr = list(sweep_sample(y, np.asarray(tr), seed, limit=CLASSIC_FIT_MAX))
    fit_all = list(sweep_sample(y, np.asarray(tr + va), seed, limit=CLASSIC_FIT_MAX))
    if len(sweep_on) < len(tr):             # the chosen C on every training item: its validation numbers
        best_pv = probs(fitted(best["C"], fit_tr), va, fit_tr)
        best = {**best, "val_loss": wlog(va, best_pv, cw), "val_acc": float((best_pv.argmax(1) == y[va]).mean())}
    pipe = fitted(best["C"], fit_all)      # cold: a TF-IDF vocabulary grows with the items it sees
    test_probs = probs(pipe, te, fit_all)
    if ctx.fabric.is_global_zero:
        _write_csv(unit_dir / "metrics.csv", sweep)
    return UnitResult(
        val_loss=best["val_loss"], val_acc=best["val_acc"], test_probs=np.round(test_probs, 6).tolist(),
        val_probs=np.round(best_pv, 6).tolist(), history=sweep, train_seconds=time.perf_counter() - t0,
        trainable_params=int(pipe[-1].coef_.size),
        total_params=int(pipe[-1].coef_.size + pipe[-1].intercept_.size),
        policy={"strategy": strat.name, "C": best["C"], "C_grid": ctx.cfg.probe_cs,
                "chosen_by": (f"{len(folds)}-fold cross-validation on train+val (thin validation)" if folds else
                              "validation log-loss") + (f" of fits on a stratified {len(sweep_on):,} of {len(tr):,} "
                                                        "training items; the chosen C fitted on all"
                                                        if len(sweep_on) < len(tr) else "")
                + "; refit on train+val" + (f" (the final fits on a stratified {CLASSIC_FIT_MAX:,} of "
                                            f"{len(tr) + len(va):,}: bounded memory)"
                                            if len(fit_all) < len(tr) + len(va) else ""), "pretrained": False,
                "rebalance": mode, **({"not_converged_at_C": sorted(set(unconverged))} if unconverged else {}),
                "features": (ctx.modality.classic_pipeline.__doc__ or "").strip().split(":")[0]}), None


def _sweep_progress(ctx: RunContext, i: int, n: int, C: float, seconds: float, t0: float) -> None:
    """One line per C of the classic sweep; after the first fit, how long the sweep may take when that is over a
    minute (200 classes of 24x24 pixels printed nothing for 15 minutes)."""
    if i == 0 and seconds * n > 60:
        ctx.log(f"classic: the first fit took {seconds:.0f} s; its sweep over {n} values of C may take about "
                f"{seconds * n / 60:.0f} minute(s) (fewer values: \"probe_cs\" in a --config file)")
    ctx.note(f"classic: C={C:g} ({i + 1} of {n}) fitted in {seconds:.1f} s ({time.perf_counter() - t0:.0f} s so far)")


def _full_probs(pipe, x, n_classes: int, chunk: int = 20_000) -> np.ndarray:
    """predict_proba with a column for every class (a class missing from training data gets 0), `chunk` items at a
    time: each row's probabilities depend on that row alone, and the TF-IDF of 200,000 texts at once took GiBs."""
    p = np.zeros((len(x), n_classes))
    for i in range(0, len(x), chunk):
        p[i: i + chunk, pipe.classes_] = pipe.predict_proba(x[i: i + chunk])
    return p


def build_model(ctx: RunContext, strat: Strategy, seed: int = 0):
    """The network a trained strategy starts from (pretrained or random), with the probe's head for LP-FT.
    Seeded first, so a scratch arm's random initialisation is the same for the same seed."""
    import torch
    ctx.fabric.seed_everything(seed, verbose=False)
    model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes), pretrained=strat.pretrained)
    if strat.needs_features:        # LP-FT: the head starts from the train-only probe
        p = probe(ctx)
        head = model.get_classifier()
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(p.train_weight))
            head.bias.copy_(torch.from_numpy(p.train_bias))
    return model


def run_trained(ctx: RunContext, strat: Strategy, unit_dir: Path, seed: int, stop_check=None):
    import torch
    model = build_model(ctx, strat, seed)
    fabric, precision = unit_fabric(ctx.fabric, ctx.precision, ctx.cfg, ctx.modality)
    model = model.to(fabric.device)         # before the trunk cache, so its frozen pass runs on the device too
    if fabric.device.type == "cuda":        # NHWC tensor-core kernels (no gain on the CPU here)
        model = model.to(memory_format=torch.channels_last)
    cfg = ctx.cfg
    checkpointing = not strat.pretrained and bool(stages(model)) and _needs_checkpointing(cfg, fabric)
    if checkpointing:   # whole network trains: recompute the large early activations instead of storing them
        _checkpoint_early_stages(model, 2)
    data = ctx.inputs
    train_ds = ctx.modality.dataset(data, ctx.split["train"], train=True)
    val_ds = ctx.modality.dataset(data, ctx.split["val"])
    plan = strat.plan(model)
    batch_fn, cache = ctx.modality.batch_fn(data), for_unit(ctx.modality, data, ctx.split, model, strat, plan)
    sizes = ctx.modality.progressive_sizes(data, strat.max_epochs()) if strat.progressive and cfg.progressive_resize \
        else None
    t0 = time.perf_counter()
    # eval-mode BatchNorms (frozen statistics) run folded into their convolutions: same maths, one pass less
    with folded_batchnorm(model, cfg.fold_batchnorm and not strat.adapters) as folded:
        with cache or contextlib.nullcontext() as ct:
            if ct is not None:     # only the trainable top runs each epoch, on stored views of the frozen trunk
                train_ds, val_ds, batch_fn = ct.train_ds, ct.val_ds, ct.batch_fn
                cached = {"views": ct.views, "first_trained_block": ct.k, "first_trained_stage": ct.stage_name,
                          "seconds": time.perf_counter() - t0,
                          "dtype": "trunk bfloat16, top float32" if ct.bf16 else "float32"}
            res = fit(fabric, model, strat, train_ds, val_ds, batch_fn=batch_fn,
                      max_epochs=strat.max_epochs(), patience=strat.patience(), min_epochs=strat.min_epochs(),
                      batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, seed=seed,
                      num_workers=cfg.num_workers, progress=ctx.progress, label=f"{strat.name} (seed {seed})",
                      stop_check=EpochLog(stop_check, strat.max_epochs(), ctx.log, f"{strat.name} seed {seed}",
                                         note=ctx.note),
                      plan=plan, sizes=sizes, class_weights=train_class_weights(ctx),
                      logit_offset=train_log_prior(ctx), metric=ctx.decision.metric,
                      round_items=max(0, cfg.round_items), fused=ctx.modality.fused_adamw)
            if ct is not None:
                cached["flops_train"] = ct.flops(res.epochs_run * (res.round_items or len(train_ds)) / len(train_ds))
        train_seconds = time.perf_counter() - t0
        trainable = max(h["trainable_params"] for h in res.history)
        adapter = strat.finish(model)          # e.g. LoRA merged into the weights: the plain architecture again
        if ctx.fabric.is_global_zero:   # under DDP every rank holds identical weights; rank 0 writes
            _write_csv(unit_dir / "metrics.csv", [{k: v for k, v in h.items() if k != "lr"} for h in res.history])
            save_weights(unit_dir / "weights.safetensors", model.state_dict())
            if adapter:
                save_weights(unit_dir / "adapter.safetensors", adapter)
        best = res.best()
        size = best.get("input_size", sizes[0] if sizes else None)      # the size its kept weights trained at
        test_probs = predict_probs(model, ctx, ctx.split["test"], size)
        val_probs = predict_probs(model, ctx, ctx.split["val"], size)    # the kept weights, for paired choices
    for e in res.events:
        ctx.log(f"{strat.name} seed {seed}: {e}")
    if res.stopped_by is not None:
        ctx.log(f"{strat.name} seed {seed}: {res.stopped_by['message']} (bounded, not final; --full-scratch trains "
                "the whole budget)")
    return UnitResult(
        val_loss=best["val_loss"], val_acc=best["val_acc"], test_probs=np.round(test_probs, 6).tolist(),
        val_probs=np.round(val_probs, 6).tolist(), history=res.history, best_epoch=res.best_epoch,
        start_val=res.start_val, epochs_run=res.epochs_run,
        epoch_budget=strat.max_epochs(), stopped_early=res.stopped_early, overfit=res.overfit, events=res.events,
        train_seconds=train_seconds, trainable_params=int(trainable),
        total_params=int(sum(p.numel() for p in model.parameters())),
        policy={**strat.describe(plan), "rebalance": ctx.decision.rebalance,
                **rounds_policy(res.round_items, len(train_ds))},
        trunk_cache=cached if cache is not None else None, precision=precision,
        racing=stop_check.last if stop_check is not None else None,
        details={"augment": cfg.augment, **({"round_items": res.round_items} if res.round_items else {}),
                 "grad_checkpointing": checkpointing, "torch_threads": torch.get_num_threads(),
                 "batchnorm_folded_pairs": folded,
                 **({"adapter_mb": round(sum(t.numel() * t.element_size() for t in adapter.values()) / 2 ** 20, 3)}
                    if adapter else {}),
                 **({"progressive_sizes": _runs(sizes[:res.epochs_run]), "eval_size": size} if sizes else {})}), model


RUNNERS = {"probe": run_probe, "sklearn": run_classic, "trained": run_trained}



def _needs_checkpointing(cfg, fabric) -> bool:
    """Activation checkpointing for scratch buys memory (4.2 -> 3.6 GiB peak at 224 px) with 40% more epoch time:
    on when asked for, or on a CPU machine with less than LOW_MEMORY_GIB available; never on a GPU (it has the
    memory)."""
    if fabric.device.type != "cpu":
        return False
    return cfg.grad_checkpointing or available_gib() < LOW_MEMORY_GIB


def _checkpoint_early_stages(model, n: int) -> None:
    """Activation checkpointing for the first n stages only, where the high-resolution activations are.
    Measured on hymenoptera scratch (224 px, batch 32, 2 CPU cores): n=2 peak 3.56 vs 4.1-4.3 GiB, epoch 9.2 vs
    6.5 s; n=1 saves nothing; timm's whole-network checkpointing doubled the epoch time."""
    from torch.utils.checkpoint import checkpoint
    for _, stage in stages(model)[:n]:
        stage.forward = functools.partial(checkpoint, stage.forward, use_reentrant=False)


def _runs(sizes: list[int]) -> list[list[int]]:
    """[128]*10 + [224]*3 -> [[128, 10], [224, 3]]: input size and epochs at it, in order."""
    return [[s, len(list(run))] for s, run in itertools.groupby(sizes)]


def predict_probs(model, ctx: RunContext, indices, size: int | None = None) -> np.ndarray:
    """Class probabilities for `indices`; size: the input size the weights trained at, when not the run's."""
    import torch
    from torch.utils.data import DataLoader
    model.eval()
    out = []
    ds = ctx.modality.dataset(ctx.inputs, list(indices))
    order = length_order(ds)            # similar lengths together (text): little padding; put back in order below
    if size and size != ctx.size:
        ds.resize_to(size)
    loader = DataLoader(ds, batch_size=64, sampler=order, collate_fn=getattr(ds, "collate", None),
                        **loader_kwargs("cpu", 0, getattr(ds, "streamed", False)))
    batch_fn = ctx.modality.batch_fn(ctx.inputs)
    with torch.inference_mode():
        for x, _ in loader:
            out.append(to_numpy(model(batch_fn(to_device(x, model))).float().softmax(1)))
    probs = np.concatenate(out)
    if order is not None:
        probs[order] = probs.copy()
    return probs
