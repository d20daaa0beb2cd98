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
from headstart.core.comparison import (Agreement, AssessReport, BackboneChoice, BackboneRow, Baseline, Comparison,
                                       NotTrained)
from headstart.core.config import RunConfig
from headstart.core.errors import UserError
from headstart.core.io import default_run_dir, ensure_writable, read_json, write_json, write_text
from headstart.core.records import Difference
from headstart.core.results import unit_result
from headstart.core.run_results import RunResults
from headstart.core.sections import BackboneComparisonRef
from headstart.outputs.report_compare import render_comparison
from headstart.outputs.report_cost import render_html
from headstart.pipeline.compare import pick_backbones, rank_agreement, recommend_backbone
from headstart.pipeline.context import removed_on_user_error
from headstart.pipeline.summarize import choose
from headstart.stats.evaluate import paired_difference
from headstart.training.strategies import BASELINES, DEFAULT, ORDER, STRATEGIES


def folder_name(backbone: str) -> str:
    """A run folder name for a backbone: registry names as they are, hub ids with their prefix (hf-org-model), local
    folders by their last component plus a short hash of the whole path (two model/ folders stay apart)."""
    prefix, _, value = backbone.partition(":") if re.match(r"^(timm|hf):", backbone) else ("", "", backbone)
    if Path(value).expanduser().exists():
        value = f"{Path(value).resolve().name}-{hashlib.sha1(str(Path(value).resolve()).encode()).hexdigest()[:6]}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{prefix}-{value}" if prefix else value).strip("-.")
    return name[-60:] or "backbone"


def run_compare(cfg: RunConfig, backbones: list[str], top_k: int = 2, progress=None, log=print) -> Comparison:
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
    ranking = [r.backbone for r in assessment.ranking]
    cost = {r.backbone: r.cost.to_dict() for r in assessment.ranking}
    trained, why = pick_backbones(ranking, cost, top_k)
    strategies = [s for s in ORDER if s in (cfg.strategies or DEFAULT)]
    runs: dict[str, RunResults] = {}
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
    write_json(out / "comparison.json", result.to_dict())
    md = render_comparison(result)
    write_text(out / "report.md", md)
    write_text(out / "report.html", render_html(md, out, f"headstart backbone comparison: {cfg.data}"))
    pick = result.recommendation.recommended
    if pick and (out / names[pick] / "model").is_dir():
        shutil.rmtree(out / "model", ignore_errors=True)
        shutil.copytree(out / names[pick] / "model", out / "model")
    for b in trained:           # each run's report says what the comparison found ("Next steps")
        res = RunResults.from_dict(read_json(out / names[b] / "results.json"))
        res.backbone_comparison = BackboneComparisonRef(summary=result.summary, report=str(out / "report.md"))
        publish(res, out / names[b])
    return result


def larger_backbone(rows: dict[str, BackboneRow], pairs: dict[str, Difference], pick: str | None) -> str:
    """What the largest trained backbone bought over the deployed one (or the smallest cost it), on test."""
    done = [b for b in rows if rows[b].ok]
    if not pick or len(done) < 2:
        return ""
    big = max(done, key=lambda b: rows[b].cost.key())
    other = big if big != pick else min(done, key=lambda b: rows[b].cost.key())
    d, sign = pairs.get(f"{other} - {pick}"), 1
    if d is None:
        d, sign = pairs.get(f"{pick} - {other}"), -1
    if d is None:
        return ""
    lo, hi = sorted((sign * d.ci[0], sign * d.ci[1]))
    x = (rows[other].cost.flops_per_item or 0) / max(rows[pick].cost.flops_per_item or 1, 1)
    what = "the largest trained" if other == big else "the cheapest trained"
    return (f" On test, {what}, {other}, scored {sign * d.points:+.1f} points [{100 * lo:+.1f}, "
            f"{100 * hi:+.1f}] against it, at {x:.1f}x its FLOPs per prediction.")


def summarize_comparison(out: Path, assessment: AssessReport, trained: list[str], why: dict,
                         runs: dict[str, RunResults], names: dict, primary: str) -> Comparison:
    """comparison.json: per trained backbone its best transfer arm (chosen on validation) and that arm's test numbers,
    paired differences between backbones, the assessment's rank agreement, the deploy choice, and the baselines of the
    primary run (the scores of every backbone stay in assessment/assessment.json)."""
    split = read_json(out / names[primary] / "split.json")
    y = np.asarray([split["classes"].index(c) for _, c in split["test"]])
    n_val = len(split["val"])
    metric = runs[primary].metric_name          # the primary run's decision metric
    scored = {a.backbone: a for a in assessment.ranking}
    rows, probs = {}, {}
    for b, res in runs.items():
        transfer = {s: m for s, m in res.ok.items() if STRATEGIES[s].transfer}
        run = str(out / names[b])
        if not transfer:
            rows[b] = BackboneRow(failed="every transfer arm failed", cost=scored[b].cost, why_trained=why[b], run=run)
            continue
        arm = choose(transfer, n_val).recommended
        m = transfer[arm]
        probs[b] = [np.asarray(r.test_probs) for s in range(res.config.seeds)
                    for r in [unit_result(out / names[b], arm, s)] if r and r.ok]
        rows[b] = BackboneRow(
            arm=arm, val_acc=m.val_acc, val_correct=m.val_correct, val_score=m.val_score, val_credit=m.val_credit,
            accuracy=m.accuracy, accuracy_ci=m.accuracy_ci, score=m.score, score_ci=m.score_ci,
            arm_seconds=m.compute.wall_seconds if m.compute else None,
            transfer_seconds=sum(x.compute.wall_seconds for x in transfer.values() if x.compute),
            flops_train=m.compute.flops_train if m.compute else None, cost=scored[b].cost, why_trained=why[b],
            run=run, input_size=res.image_size)
    pairs = {}
    order = [b for b in ranking_of(assessment) if b in probs]
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            pairs[f"{a} - {b}"] = Difference.from_dict(paired_difference(y, probs[a], probs[b], metric=metric))
    measured = {b: r.score for b, r in rows.items() if r.ok}
    agreement = rank_agreement(ranking_of(assessment), measured,
                               noisy_pairs=sum(1 for d in pairs.values() if not d.significant))
    rec = BackboneChoice.from_dict(recommend_backbone({b: r.to_dict() for b, r in rows.items() if r.ok}, n_val))
    base = runs[primary].ok
    baselines = {s: Baseline(accuracy=base[s].accuracy, accuracy_ci=base[s].accuracy_ci, val_acc=base[s].val_score,
                             provenance=base[s].provenance.to_dict()) for s in BASELINES if s in base}
    pick = rec.recommended
    summary = (f"of {', '.join(trained)} (trained on this split), deploy **{pick}** (`{rows[pick].arm}`, "
               f"{100 * rows[pick].accuracy:.1f}% on test): {rec.why}." if pick else rec.why + ".")
    summary += larger_backbone(rows, pairs, pick)
    base_best = max(baselines, key=lambda s: baselines[s].val_acc, default=None)
    if pick and base_best and baselines[base_best].val_acc > rows[pick].val_score + rec.validation_noise:
        summary += (f" But `{base_best}` (no pretraining) beat it on validation by more than the noise "
                    f"({100 * baselines[base_best].val_acc:.1f}%): no starting point paid off here; see "
                    f"{primary}'s report.")
    return Comparison(data=runs[primary].config.data, out=str(out), assessed=ranking_of(assessment),
                      skipped=assessment.skipped, trained=trained, primary=primary, rows=rows, pairs=pairs,
                      agreement=Agreement.from_dict(agreement), recommendation=rec, baselines=baselines, n_val=n_val,
                      n_test=int(len(y)), summary=summary, metric=metric,
                      not_trained={b: NotTrained(cost=a.cost) for b, a in scored.items() if b not in trained})


def ranking_of(assessment: AssessReport) -> list[str]:
    return [r.backbone for r in assessment.ranking]
