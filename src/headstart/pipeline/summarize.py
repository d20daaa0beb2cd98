"""Finished units -> results.json's record (core/run_results.RunResults): metrics with CIs, paired differences,
the recommendation, the curve.

    results = summarize(ctx, strategies)             # every strategy's numbers; `recommended` chosen on validation
    results.curve = summarize_curve(ctx, strategies)   # points, fits, labels needed and saved (--curve)
"""
from __future__ import annotations

import numpy as np

from headstart.pipeline.state import RunContext
from headstart.core.errors import UserError
from headstart.core.results import UnitResult, unit_result
from headstart.core.run_results import ArmSummary, Recommendation, RunResults
from headstart.core.sections import Curve
from headstart.models.device import resolve_precision
from headstart.pipeline.grid import fractions, plan, unit_root
from headstart.pipeline.predictions import FILE as PREDICTIONS
from headstart.pipeline.predictions import write_predictions
from headstart.stats.curve import labels_needed, labels_saved, money, public
from headstart.stats.evaluate import metrics, paired_difference, validation_ties
from headstart.stats.metrics import LABELS, collapse, item_weights, operating_threshold, predict, score
from headstart.training.strategies import BASELINES, NETWORK_BASELINE, ORDER, STRATEGIES, TRANSFER


def summarize(ctx: RunContext, strategies: list[str]) -> RunResults:
    cfg, ds, split, dec = ctx.cfg, ctx.ds, ctx.split, ctx.decision
    y_test = np.asarray(ds.labels)[split["test"]]
    y_val = np.asarray(ds.labels)[split["val"]]
    per_strategy, probs, preds, said = {}, {}, {}, {}
    for s in strategies:
        res = [unit_result(ctx.run_dir, s, seed) for seed in range(cfg.seeds)]
        failed = [r for r in res if r and not r.ok]
        ok = [r for r in res if r and r.ok]
        if not ok:
            per_strategy[s] = ArmSummary(failed="not run" if not failed else failed[0].failed)
            continue
        probs[s] = [np.asarray(r.test_probs, dtype=np.float64) for r in ok]
        ops = [operating_point(r, y_val, dec) for r in ok]
        preds[s] = [predict(p, op["threshold"], dec.positive) for p, op in zip(probs[s], ops)]
        said[s] = [(r, op["threshold"]) for r, op in zip(ok, ops)]
        m = metrics(y_test, probs[s], ds.classes, reps=cfg.bootstrap, metric=dec.metric, preds=preds[s],
                    positive=dec.positive)
        per_strategy[s] = ArmSummary.from_dict({
            **m,
            "val_acc": float(np.mean([r.val_acc for r in ok])),
            **_validation(ok, ops, y_val, dec, ds.classes),
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
            **({"operating_point": ops} if dec.positive is not None else {}),
            **({"input_sizes": [{"seed": r.seed, "epochs_at_size": r.details["progressive_sizes"],
                                 "eval_size": r.details["eval_size"]} for r in ok]}
               if ok[0].details.get("progressive_sizes") else {}),
        })
    deltas = {}
    for base in BASELINES:             # every transfer arm against every from-scratch baseline
        for s in probs:
            if base in probs and s in TRANSFER:
                deltas[f"{s} - {base}"] = paired_difference(y_test, probs[s], probs[base], cfg.bootstrap,
                                                            dec.metric, preds[s], preds[base])
    if not probs:
        raise UserError("every strategy failed; see the 'failed' entries in the unit result.json files")
    choice = choose(per_strategy, len(split["val"]))
    if ctx.fabric.is_global_zero:
        write_predictions(ctx, said)
    counts = {r: {c: int(sum(1 for i in split[r] if ds.labels[i] == k)) for k, c in enumerate(ds.classes)}
              for r in ("train", "val", "test")}
    words = LABELS[dec.metric]
    return RunResults.from_dict({
        "headstart_version": _version(),
        "config": cfg.to_dict(),
        "metric": {**dec.to_dict(ds.classes), "label": words},
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
        "recommended": choice.recommended,
        "recommendation": choice,
        "predictions": PREDICTIONS,
        "recommendation_basis": f"the deployable arm (one headstart exports) with the highest mean validation {words}"
                                ", passing over an arm that ignores a class on validation when another does not; "
                                "the deployable arms share one network, so a tie within validation noise goes to the"
                                " better score too; the test split was not used for this choice",
    })


def operating_point(r: UnitResult, y_val: np.ndarray, dec) -> dict:
    """A unit's decision rule: argmax, or for a binary task scored on another metric than accuracy, the threshold
    on p(positive) that maximises it on validation (stats/metrics.operating_threshold)."""
    if dec.positive is None or dec.metric == "accuracy" or len(r.val_probs) != len(y_val):
        return {"seed": r.seed, "threshold": None, "why": "argmax"}
    t, why = operating_threshold(y_val, np.asarray(r.val_probs)[:, dec.positive], dec.metric, dec.positive)
    return {"seed": r.seed, "threshold": t, "why": why}


def _validation(units: list[UnitResult], ops: list[dict], y_val: np.ndarray, dec, classes: list[str]) -> dict:
    """Validation score in the decision metric, the per-item credits ties are judged on, and the collapse flag."""
    if not all(len(r.val_probs) == len(y_val) for r in units):     # units from before val_probs were kept
        return {"val_score": float(np.mean([r.val_acc for r in units]))}
    k = len(classes)
    vp = [predict(np.asarray(r.val_probs), op["threshold"], dec.positive) for r, op in zip(units, ops)]
    w = item_weights(dec.metric, y_val, k)
    right = np.mean([p == y_val for p in vp], axis=0)
    return {"val_score": float(np.mean([score(dec.metric, y_val, p, k) for p in vp])),
            "val_correct": np.round(right, 4).tolist(),
            **({"val_credit": np.round(right * w, 4).tolist()} if w is not None else {}),
            "val_collapse": collapse(y_val, vp, classes)}


def choose(per_strategy: dict, n_val: int) -> Recommendation:
    """The arm to deploy, from validation only: the best exportable arm by validation score (the decision metric;
    then loss, then registry order), passing over arms that ignore a class on validation (collapse) while another
    does not. Arms within the validation noise of it are reported as tied (paired over the same validation items
    when the units recorded their validation predictions: stats/evaluate.validation_ties); the deployable arms share
    one network and cost the same to serve, so a tie still goes to the better validation score. Also says which arm
    was best overall when that one is not exportable (the classic baseline), and which trained arms kept their
    starting weights (fine-tuning that never improved on the probe it began from). per_strategy: name ->
    ArmSummary (or its dict)."""
    arms = {s: ArmSummary.of(m) for s, m in per_strategy.items()}
    arms = {s: m for s, m in arms.items() if m.ok}        # a failed arm is no candidate
    key = lambda s: (-round(arms[s].val_score, 6), arms[s].val_loss, ORDER.index(s))  # noqa: E731
    ranked = sorted(arms, key=key)
    deployable = [s for s in ranked if STRATEGIES[s].exports] or ranked
    collapsed = [s for s in deployable if (arms[s].val_collapse or {}).get("collapsed")]
    healthy = [s for s in deployable if s not in collapsed] or deployable
    tied, noise, paired = validation_ties({s: _credits(arms[s]) for s in healthy}, healthy[0], n_val)
    others = [s for s in (tied if len(tied) > 1 else healthy) if s != healthy[0]]
    return Recommendation(
        recommended=healthy[0], best_on_validation=ranked[0], tied_within_noise=tied if len(tied) > 1 else [],
        validation_noise=max((noise[s] for s in others), default=noise[healthy[0]]), paired=paired, n_val=n_val,
        passed_over_collapsed=[s for s in collapsed if healthy != deployable],
        kept_starting_weights=[s for s in ranked if STRATEGIES[s].trains_network and STRATEGIES[s].pretrained
                               and all(b == -1 for b in arms[s].best_epochs or [0])])


def _credits(m) -> dict:
    """What stats/evaluate.validation_ties judges a candidate on (an arm's or a backbone row's)."""
    return {"val_credit": m.val_credit, "val_correct": m.val_correct, "val_score": m.val_score}


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


def summarize_curve(ctx: RunContext, strategies: list[str]) -> Curve | None:
    """Test score (the decision metric) per (strategy, label count) over seeds, a power-law fit, labels needed for the target and saved."""
    cfg = ctx.cfg
    if not cfg.curve:
        return None
    y = np.asarray(ctx.ds.labels)
    y_test = y[ctx.split["test"]]
    points: dict[str, dict[int, list[float]]] = {}
    bounded = []                  # units that racing stopped: their points are bounds, not final values
    y_val, dec, k = y[ctx.split["val"]], ctx.decision, len(ctx.ds.classes)
    for f, s, seed in plan(cfg, strategies):
        r = unit_result(unit_root(ctx.run_dir, f), s, seed)
        if r is None or not r.ok:
            continue
        op = operating_point(r, y_val, dec)           # points in the decision metric, at each unit's own rule
        acc = score(dec.metric, y_test, predict(np.asarray(r.test_probs), op["threshold"], dec.positive), k)
        points.setdefault(s, {}).setdefault(int(r.n_train), []).append(acc)
        if r.raced:
            bounded.append({"strategy": s, "labels": int(r.n_train), "seed": seed, "epoch": r.racing["epoch"],
                            "budget": r.racing["budget"], "bound": r.racing["bound"]})
    best_scratch = max((np.mean(v) for v in points.get(NETWORK_BASELINE, {}).values()), default=None)
    target = cfg.target_metric or best_scratch
    out = {"fractions": fractions(cfg), "target": target, "metric": dec.metric,
           "target_source": "--target-metric" if cfg.target_metric else "best scratch score",
           "points": {s: {str(n): v for n, v in sorted(p.items())} for s, p in points.items()},
           "cost_per_label": cfg.cost_per_label, "val_items": len(ctx.split["val"]), "needed": {}, "saved": {},
           "bounded": bounded}
    if target is None:
        return Curve.from_dict(out)
    needed = {s: labels_needed(p, target) for s, p in points.items() if len(p) >= 2}
    out["needed"] = {s: public(v) for s, v in needed.items()}
    for s in TRANSFER:
        if s in needed and NETWORK_BASELINE in needed:
            saved = labels_saved(needed[s], needed[NETWORK_BASELINE])
            saved["money"] = money(saved["saved"], cfg.cost_per_label)
            out["saved"][f"{s} vs {NETWORK_BASELINE}"] = saved
    return Curve.from_dict(out)
