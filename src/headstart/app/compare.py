"""`headstart run --backbones a,b,c`: which pretrained model to start from, measured on one split.

    res = run_compare(RunConfig(data="path/to/images"), ["efficientnet_lite0", "efficientnet_lite2"], top_k=2)

Out folder: assessment/ (every backbone scored, with FLOPs, latency and a training step's memory), one run folder
per trained backbone (the first by the assessment runs every strategy, scratch and classic included; the others run
the transfer arms only, on a copy of its split.json, so the split and seeds are the same), comparison.json,
report.md / report.html, and model/ (the deployed backbone's exported model). Running it again resumes every run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
from pathlib import Path

import numpy as np

from headstart.app.run import publish, run_assess, run_experiment
from headstart.core.config import RunConfig
from headstart.core.errors import UserError
from headstart.core.io import default_run_dir, ensure_writable, read_json, write_json, write_text
from headstart.core.results import unit_result
from headstart.outputs.report_compare import render_comparison
from headstart.outputs.report_cost import render_html
from headstart.pipeline.compare import cost_key, pick_backbones, rank_agreement, recommend_backbone
from headstart.pipeline.context import removed_on_user_error
from headstart.pipeline.summarize import choose
from headstart.stats.evaluate import paired_difference
from headstart.training.strategies import BASELINES, ORDER, STRATEGIES


def folder_name(backbone: str) -> str:
    """A run folder name for a backbone: registry names as they are, hub ids with their prefix (hf-org-model), local
    folders by their last component plus a short hash of the whole path (two model/ folders stay apart)."""
    prefix, _, value = backbone.partition(":") if re.match(r"^(timm|hf):", backbone) else ("", "", backbone)
    if Path(value).expanduser().exists():
        value = f"{Path(value).resolve().name}-{hashlib.sha1(str(Path(value).resolve()).encode()).hexdigest()[:6]}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{prefix}-{value}" if prefix else value).strip("-.")
    return name[-60:] or "backbone"


def run_compare(cfg: RunConfig, backbones: list[str], top_k: int = 2, progress=None, log=print) -> dict:
    if len(set(backbones)) < 2:
        raise UserError("--backbones needs at least two different backbones (for one, use --backbone)")
    if top_k < 1:
        raise UserError(f"--top-k {top_k} must be at least 1")
    if cfg.strategies and not any(s in STRATEGIES and STRATEGIES[s].transfer for s in cfg.strategies):
        raise UserError(f"--backbones compares transfer arms, but --strategies {','.join(cfg.strategies)} has none; "
                        f"add {' or '.join(s for s in ORDER if STRATEGIES[s].transfer)}")
    cfg = dataclasses.replace(cfg, out=cfg.out or default_run_dir(cfg.data, "backbones"))
    out = Path(cfg.out).resolve()
    if out.is_dir() and any(out.iterdir()) and not (out / "assessment").is_dir():
        raise UserError(f"--out {out} is an existing folder that is not a headstart backbone comparison; choose a "
                        "new or empty folder")
    names = {b: folder_name(b) for b in backbones}
    if len(set(names.values())) < len(names):
        raise UserError(f"--backbones {','.join(backbones)} lists the same backbone twice")
    with removed_on_user_error(out):            # e.g. a mistyped data path: no empty comparison folder left
        ensure_writable(out)
        log(f"assessing {len(backbones)} backbones: {', '.join(backbones)}")
        assessment = run_assess(dataclasses.replace(cfg, out=str(out / "assessment")), backbones, progress, log,
                                memory=True)
    ranking = [r["backbone"] for r in assessment["ranking"]]
    cost = {r["backbone"]: r["cost"] for r in assessment["ranking"]}
    trained, why = pick_backbones(ranking, cost, top_k)
    strategies = [s for s in ORDER if s in (cfg.strategies or ORDER)]
    runs: dict[str, dict] = {}
    primary = trained[0]
    for b in trained:
        run_dir = out / names[b]
        sub = dataclasses.replace(cfg, backbone=b, out=str(run_dir))
        if b != primary:        # transfer arms only, on the first run's split; scratch and classic ran there
            sub = dataclasses.replace(sub, strategies=[s for s in strategies if STRATEGIES[s].transfer],
                                      assess=False)
            run_dir.mkdir(parents=True, exist_ok=True)
            if not (run_dir / "split.json").exists():
                shutil.copyfile(out / names[primary] / "split.json", run_dir / "split.json")
        log(f"backbone {b} ({why[b]}): running {', '.join(sub.strategies or strategies)}")
        runs[b] = run_experiment(sub, progress=progress, log=log)
    result = summarize_comparison(out, assessment, trained, why, runs, names, primary)
    write_json(out / "comparison.json", result)
    md = render_comparison(result)
    write_text(out / "report.md", md)
    write_text(out / "report.html", render_html(md, out, f"headstart backbone comparison: {cfg.data}"))
    pick = result["recommendation"]["recommended"]
    if pick and (out / names[pick] / "model").is_dir():
        shutil.rmtree(out / "model", ignore_errors=True)
        shutil.copytree(out / names[pick] / "model", out / "model")
    for b in trained:           # each run's report says what the comparison found ("Next steps")
        res = read_json(out / names[b] / "results.json")
        res["backbone_comparison"] = {"summary": result["summary"], "report": str(out / "report.md")}
        publish(res, out / names[b])
    return result


def larger_backbone(rows: dict, pairs: dict, pick: str | None) -> str:
    """What the largest trained backbone bought over the deployed one (or the smallest cost it), on test."""
    done = [b for b in rows if "accuracy" in rows[b]]
    if not pick or len(done) < 2:
        return ""
    big = max(done, key=lambda b: cost_key(rows[b]["cost"]))
    other = big if big != pick else min(done, key=lambda b: cost_key(rows[b]["cost"]))
    d = pairs.get(f"{other} - {pick}")
    sign = 1
    if d is None:
        d, sign = pairs.get(f"{pick} - {other}"), -1
    if d is None:
        return ""
    lo, hi = sorted((sign * d["ci"][0], sign * d["ci"][1]))
    x = (rows[other]["cost"].get("flops_per_item") or 0) / max(rows[pick]["cost"].get("flops_per_item") or 1, 1)
    what = "the largest trained" if other == big else "the cheapest trained"
    return (f" On test, {what}, {other}, scored {100 * sign * d['difference']:+.1f} points [{100 * lo:+.1f}, "
            f"{100 * hi:+.1f}] against it, at {x:.1f}x its FLOPs per prediction.")


def summarize_comparison(out: Path, assessment: dict, trained: list[str], why: dict, runs: dict, names: dict,
                         primary: str) -> dict:
    split = read_json(out / names[primary] / "split.json")
    y = np.asarray([split["classes"].index(c) for _, c in split["test"]])
    n_val = len(split["val"])
    metric = (runs[primary].get("metric") or {}).get("name", "accuracy")   # the primary run's decision metric
    rows, probs = {}, {}
    for b, res in runs.items():
        transfer = {s: m for s, m in res["strategies"].items() if STRATEGIES[s].transfer and "failed" not in m}
        a = next(r for r in assessment["ranking"] if r["backbone"] == b)
        if not transfer:
            rows[b] = {"failed": "every transfer arm failed", "cost": a["cost"], "why_trained": why[b],
                       "run": str(out / names[b])}
            continue
        arm = choose(transfer, n_val)["recommended"]
        m = transfer[arm]
        seeds = res["config"]["seeds"]
        probs[b] = [np.asarray(r.test_probs) for s in range(seeds)
                    for r in [unit_result(out / names[b], arm, s)] if r and r.ok]
        arms_seconds = sum((x.get("compute") or {}).get("wall_seconds", 0.0) for x in transfer.values())
        rows[b] = {"arm": arm, "val_acc": m["val_acc"], "val_correct": m.get("val_correct"),
                   "val_score": m.get("val_score", m["val_acc"]), "val_credit": m.get("val_credit"),
                   "accuracy": m["accuracy"], "accuracy_ci": m["accuracy_ci"],
                   "score": m.get("score", m["accuracy"]), "score_ci": m.get("score_ci", m["accuracy_ci"]),
                   "arm_seconds": (m.get("compute") or {}).get("wall_seconds"), "transfer_seconds": arms_seconds,
                   "flops_train": (m.get("compute") or {}).get("flops_train"), "cost": a["cost"],
                   "why_trained": why[b], "run": str(out / names[b]), "input_size": res.get("image_size")}
    pairs = {}
    order = [b for b in assessment["ranking"] if b["backbone"] in probs]
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            d = paired_difference(y, probs[a["backbone"]], probs[b["backbone"]], metric=metric)
            pairs[f"{a['backbone']} - {b['backbone']}"] = d
    measured = {b: r["score"] for b, r in rows.items() if "score" in r}
    agreement = rank_agreement([r["backbone"] for r in assessment["ranking"]], measured,
                               noisy_pairs=sum(1 for d in pairs.values() if not d["significant"]))
    rec = recommend_backbone({b: r for b, r in rows.items() if "failed" not in r}, n_val)
    base = runs[primary]["strategies"]
    baselines = {s: {"accuracy": base[s]["accuracy"], "accuracy_ci": base[s]["accuracy_ci"],
                     "val_acc": base[s].get("val_score", base[s]["val_acc"]), "provenance": base[s].get("provenance")}
                 for s in BASELINES if s in base and "failed" not in base[s]}
    pick = rec["recommended"]
    summary = (f"of {', '.join(trained)} (trained on this split), deploy **{pick}** (`{rows[pick]['arm']}`, "
               f"{100 * rows[pick]['accuracy']:.1f}% on test): {rec['why']}." if pick else rec["why"] + ".")
    summary += larger_backbone(rows, pairs, pick)
    base_best = max(baselines, key=lambda s: baselines[s]["val_acc"], default=None)
    if pick and base_best and baselines[base_best]["val_acc"] > rows[pick]["val_score"] + rec["validation_noise"]:
        summary += (f" But `{base_best}` (no pretraining) beat it on validation by more than the noise "
                    f"({100 * baselines[base_best]['val_acc']:.1f}%): no starting point paid off here; see "
                    f"{primary}'s report.")
    return {"data": runs[primary]["config"]["data"], "out": str(out),
            "assessed": [r["backbone"] for r in assessment["ranking"]],
            "skipped": assessment["skipped"], "trained": trained, "primary": primary, "rows": rows,
            "pairs": pairs, "agreement": agreement, "recommendation": rec, "baselines": baselines,
            "n_val": n_val, "n_test": int(len(y)), "summary": summary, "metric": metric,
            "not_trained": {r["backbone"]: {"cost": r["cost"]} for r in assessment["ranking"]
                            if r["backbone"] not in trained}}   # scores of every backbone: assessment/assessment.json
