"""Finished units -> the results.json dict: metrics with CIs, paired differences, the recommendation, the curve.

    results = summarize(ctx, strategies)             # every strategy's numbers; `recommended` chosen on validation
    results["curve"] = summarize_curve(ctx, strategies)   # points, fits, labels needed and saved (--curve)
"""
from __future__ import annotations

import numpy as np

from headstart.core.context import RunContext
from headstart.core.errors import UserError
from headstart.core.results import UnitResult, unit_result
from headstart.models.device import resolve_precision
from headstart.pipeline.grid import fractions, plan, unit_root
from headstart.stats.curve import labels_needed, labels_saved, money, public
from headstart.stats.evaluate import metrics, paired_difference, validation_ties
from headstart.training.strategies import BASELINES, NETWORK_BASELINE, ORDER, STRATEGIES, TRANSFER


def summarize(ctx: RunContext, strategies: list[str]) -> dict:
    cfg, ds, split = ctx.cfg, ctx.ds, ctx.split
    y_test = np.asarray(ds.labels)[split["test"]]
    per_strategy, probs = {}, {}
    for s in strategies:
        res = [unit_result(ctx.run_dir, s, seed) for seed in range(cfg.seeds)]
        failed = [r for r in res if r and not r.ok]
        ok = [r for r in res if r and r.ok]
        if not ok:
            per_strategy[s] = {"failed": failed[0].failed if failed else "not run"}
            continue
        probs[s] = [np.asarray(r.test_probs, dtype=np.float64) for r in ok]
        m = metrics(y_test, probs[s], ds.classes, reps=cfg.bootstrap)
        per_strategy[s] = {
            **m,
            "val_acc": float(np.mean([r.val_acc for r in ok])),
            "val_correct": _val_correct(ok, np.asarray(ds.labels)[split["val"]]),
            "val_loss": float(np.mean([r.val_loss for r in ok])),
            "train_seconds": float(np.mean([r.train_seconds for r in ok])),
            "epochs_run": [r.epochs_run for r in ok], "epoch_budget": ok[0].epoch_budget,
            "best_epochs": [r.best_epoch for r in ok],
            "stopped_early": any(r.stopped_early for r in ok), "overfit": any(r.overfit for r in ok),
            "trainable_params": ok[0].trainable_params, "total_params": ok[0].total_params,
            "policy": ok[0].policy, "events": ok[0].events,
            "failed_seeds": [r.seed for r in failed],
            "compute": _mean_compute([r.compute for r in ok]), "trunk_cache": ok[0].trunk_cache,
            "precision": ok[0].precision or resolve_precision(cfg),
            "provenance": provenance(ok),
            **({"input_sizes": [{"seed": r.seed, "epochs_at_size": r.details["progressive_sizes"],
                                 "eval_size": r.details["eval_size"]} for r in ok]}
               if ok[0].details.get("progressive_sizes") else {}),
        }
    deltas = {}
    for base in BASELINES:             # every transfer arm against every from-scratch baseline
        for s in probs:
            if base in probs and s in TRANSFER:
                deltas[f"{s} - {base}"] = paired_difference(y_test, probs[s], probs[base], cfg.bootstrap)
    if not probs:
        raise UserError("every strategy failed; see the 'failed' entries in the unit result.json files")
    choice = choose(per_strategy, len(split["val"]))
    counts = {r: {c: int(sum(1 for i in split[r] if ds.labels[i] == k)) for k, c in enumerate(ds.classes)}
              for r in ("train", "val", "test")}
    return {
        "headstart_version": _version(),
        "config": cfg.to_dict(),
        "precision": resolve_precision(cfg), "device": str(ctx.fabric.device),
        "backbone": ctx.spec.to_dict(),
        "image_size": ctx.size,
        "input": ctx.modality.input_description(ctx.size),
        "data": {"root": str(ds.root), "modality": ctx.modality.name, "layout": ds.layout, "classes": ds.classes,
                 "n_items": len(ds), "modality_stats": ctx.state.stats,
                 "fingerprint": ds.fingerprint(), "roles": split["roles"], "counts": counts,
                 "skipped": ds.skipped},
        "strategies": per_strategy,
        "paired_differences": deltas,
        "recommended": choice["recommended"],
        "recommendation": choice,
        "recommendation_basis": "the deployable arm (one headstart exports) with the highest mean validation "
                                "accuracy; arms within validation noise of it count as a tie, won by the cheapest "
                                "transfer arm; the test split was not used for this choice",
    }


def choose(per_strategy: dict, n_val: int) -> dict:
    """The arm to deploy, from validation only. The best exportable arm by validation accuracy (then loss, then the
    cheaper strategy); every arm within the validation noise of it is tied with it (paired over the same validation
    items when the units recorded their validation predictions, else two standard errors of a difference of two
    accuracies on n_val items: stats/evaluate.validation_ties), and the cheapest transfer arm among the tied wins.
    Also says which arm was best overall when that one is not exportable (the classic baseline), and which trained
    arms kept their starting weights (fine-tuning that never improved on the probe it began from)."""
    per_strategy = {s: m for s, m in per_strategy.items() if "failed" not in m}      # a failed arm is no candidate
    key = lambda s: (-round(per_strategy[s]["val_acc"], 6), per_strategy[s]["val_loss"], ORDER.index(s))  # noqa
    ranked = sorted(per_strategy, key=key)
    deployable = [s for s in ranked if STRATEGIES[s].exports] or ranked
    tied, noise, paired = validation_ties({s: per_strategy[s] for s in deployable}, deployable[0], n_val)
    cheap = [s for s in ORDER if s in tied and STRATEGIES[s].transfer]
    pick = cheap[0] if cheap else tied[0]
    others = [s for s in (tied if len(tied) > 1 else deployable) if s != deployable[0]]
    return {"recommended": pick, "best_on_validation": ranked[0], "tied_within_noise": tied if len(tied) > 1 else [],
            "validation_noise": max((noise[s] for s in others), default=noise[deployable[0]]), "paired": paired,
            "n_val": n_val,
            "kept_starting_weights": [s for s in ranked if STRATEGIES[s].trains_network and STRATEGIES[s].pretrained
                                      and all(b == -1 for b in per_strategy[s].get("best_epochs", [0]))]}


def _val_correct(units: list[UnitResult], y_val: np.ndarray) -> list[float] | None:
    """Per validation item, the share of seeds whose kept model got it right (None: a unit without val_probs)."""
    if not all(len(r.val_probs) == len(y_val) for r in units):
        return None
    right = np.mean([np.asarray(r.val_probs).argmax(1) == y_val for r in units], axis=0)
    return np.round(right, 4).tolist()


def provenance(units_ok: list[UnitResult]) -> dict:
    """Full, or bounded: which seeds racing stopped, at which epoch, with which bound (stats/racing.py)."""
    raced = [{"seed": r.seed, **r.racing} for r in units_ok if r.raced]
    return {"kind": "bounded" if raced else "full", "raced": raced}


def _mean_compute(rows: list) -> dict | None:
    """Per-seed compute records averaged field by field (numbers), other fields from the first seed."""
    rows = [r for r in rows if r]
    if not rows:
        return None
    return {k: (float(np.mean([r[k] for r in rows])) if isinstance(v, (int, float)) and not isinstance(v, bool)
                else v) for k, v in rows[0].items()}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("headstart")
    except PackageNotFoundError:
        return "dev"


def summarize_curve(ctx: RunContext, strategies: list[str]) -> dict | None:
    """Accuracy per (strategy, label count) over seeds, a power-law fit, labels needed for the target and saved."""
    cfg = ctx.cfg
    if not cfg.curve:
        return None
    y = np.asarray(ctx.ds.labels)
    y_test = y[ctx.split["test"]]
    points: dict[str, dict[int, list[float]]] = {}
    bounded = []                  # units that racing stopped: their points are bounds, not final values
    for f, s, seed in plan(cfg, strategies):
        r = unit_result(unit_root(ctx.run_dir, f), s, seed)
        if r is None or not r.ok:
            continue
        acc = float((np.asarray(r.test_probs).argmax(1) == y_test).mean())
        points.setdefault(s, {}).setdefault(int(r.n_train), []).append(acc)
        if r.raced:
            bounded.append({"strategy": s, "labels": int(r.n_train), "seed": seed, "epoch": r.racing["epoch"],
                            "budget": r.racing["budget"], "bound": r.racing["bound"]})
    best_scratch = max((np.mean(v) for v in points.get(NETWORK_BASELINE, {}).values()), default=None)
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
    for s in TRANSFER:
        if s in needed and NETWORK_BASELINE in needed:
            saved = labels_saved(needed[s], needed[NETWORK_BASELINE])
            saved["money"] = money(saved["saved"], cfg.cost_per_label)
            out["saved"][f"{s} vs {NETWORK_BASELINE}"] = saved
    return out
