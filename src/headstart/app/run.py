"""One controlled experiment: every strategy on the same saved split and seeds, evaluated once on test; and the
`headstart assess` ranking of several backbones.

    results = run_experiment(RunConfig(data="path/to/images"))   # writes the run folder, returns results.json
    ranking = run_assess(cfg, ["efficientnet_lite0", "efficientnet_lite1"])

Run folder: config.json, split.json, <strategy>/seed<k>/{result.json, metrics.csv, weights.safetensors},
results.json, report.md, model/ (the recommended model). A finished unit (strategy, seed) is never retrained:
re-running the same command resumes. A different config or changed data under the same folder is refused.
The composition, in order: build_context -> pretraining_checks -> run_grid -> summarize -> outputs.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from headstart.core.config import RunConfig
from headstart.core.comparison import AssessReport
from headstart.core.errors import DamagedFile, UserError
from headstart.core.findings import Assessment, Leakage
from headstart.core.records import Skipped
from headstart.core.run_results import RunResults
from headstart.core.io import default_run_dir, ensure_writable, read_json, write_json, write_text
from headstart.modalities import MODALITIES, detect_modality
from headstart.outputs.export import export_recommended
from headstart.outputs.gallery import make_gallery
from headstart.outputs.track import check_tracker, track
from headstart.outputs.plots import make_plots
from headstart.outputs.report import render_markdown
from headstart.outputs.report_assess import render_assessment
from headstart.outputs.report_cost import render_html
from headstart.pipeline.assess import assess, predicted_vs_measured
from headstart.pipeline.checks import pretraining_checks
from headstart.pipeline.context import build_context, removed_on_user_error
from headstart.pipeline.grid import plan, run_grid
from headstart.pipeline.labels import check_labels
from headstart.pipeline.summarize import summarize, summarize_curve
from headstart.pipeline.compute import backbone_cost
from headstart.pipeline.state import Stages
from headstart.training.strategies import ORDER, TRANSFER


def run_experiment(cfg: RunConfig, progress=None, log=print) -> RunResults:
    """Run (or resume) the experiment described by cfg and return its results (results.json's record)."""
    t_start = time.perf_counter()
    stages = Stages()
    with stages("reading data"):
        ctx = build_context(cfg, progress, log)
    ctx.stages = stages
    cfg = ctx.cfg                   # the resolved copy (modality, backbone, defaults, strategies, paths)
    check_tracker(cfg.tracker)
    strategies = [s for s in ORDER if s in cfg.strategies]
    assessment, leakage = pretraining_checks(ctx)       # timed inside: assessment, duplicates
    with stages("arms (units)"):
        grid = run_grid(ctx, plan(cfg, strategies))
    with stages("summary"):
        results = summarize(ctx, strategies)
        with stages("label check"):
            results.label_issues = check_labels(ctx) if cfg.check_labels else None
        results.leakage = Leakage.of(leakage)
        results.curve = summarize_curve(ctx, strategies)
        if assessment:
            results.assessment = Assessment.of(assessment)
            if results.assessment.ok:
                results.assessment.check = predicted_vs_measured(assessment, results)
    results.grid = grid if grid.units else None
    if ctx.fabric.is_global_zero:
        with stages("outputs"):
            results.model = export_recommended(ctx, results)
            results.plots = make_plots(results, ctx.run_dir)
            results.gallery = make_gallery(results, ctx.run_dir)
        before = _previous_results(ctx.run_dir / "results.json", log)
        if before:                          # sections written by `suggest` / `run --backbones`
            results.suggestions, results.backbone_comparison = before.suggestions, before.backbone_comparison
        results.stages = stages.rounded()
        results.wall_seconds_this_invocation = time.perf_counter() - t_start
        publish(results, ctx.run_dir)
        logged = track(results, ctx.run_dir, cfg.tracker)
        if logged:
            log(f"{cfg.tracker}: logged {len(logged)} unit(s)" + (f" under {ctx.run_dir / 'tensorboard'}"
                                                                  if cfg.tracker == "tensorboard" else ""))
    return results


def _previous_results(path: Path, log) -> RunResults | None:
    """The run's earlier results (its suggest / backbone-comparison sections are kept); None if none or damaged."""
    try:
        return RunResults.from_dict(read_json(path)) if path.exists() else None
    except (DamagedFile, AttributeError, TypeError, ValueError):
        log(f"{path} was damaged: writing it again (a suggest or --backbones section in it is lost; run those "
            "again)")
        return None


def publish(results: RunResults, run_dir: Path) -> None:
    """results.json, report.md and report.html of a run folder (again after `suggest` adds its section)."""
    write_json(run_dir / "results.json", results.to_dict())
    md = render_markdown(results)
    write_text(run_dir / "report.md", md)
    write_text(run_dir / "report.html", render_html(md, run_dir, f"headstart report: {results.data.root}"))


def run_assess(cfg: RunConfig, backbones: list[str], progress=None, log=print, memory: bool = False) -> AssessReport:
    """`headstart assess`: every backbone that loads, ranked by LogME, with what each costs to run (FLOPs,
    parameters, latency; memory=True: a training step's peak memory too); written to <out>/assessment.{json,md}."""
    if not cfg.out:
        cfg = dataclasses.replace(cfg, out=default_run_dir(cfg.data, "assess"))
    with removed_on_user_error(Path(cfg.out)):
        return _assess_backbones(cfg, backbones, ensure_writable(Path(cfg.out)), progress, log, memory)


def _assess_backbones(cfg: RunConfig, backbones: list[str], out: Path, progress, log, memory: bool) -> AssessReport:
    backbones = backbones or [MODALITIES[detect_modality(cfg.data, cfg.modality)].default_backbone]
    report = AssessReport(data=cfg.data)
    for b in backbones:
        try:
            ctx = build_context(dataclasses.replace(cfg, backbone=b, strategies=list(TRANSFER[:1])), progress, log,
                                run_dir=out)
        except UserError as e:
            if len(backbones) == 1:
                raise
            report.skipped.append(Skipped(backbone=b, reason=str(e)))
            log(f"{b}: skipped ({e})")
            continue
        report.ranking.append(Assessment.from_dict({**assess(ctx), "cost": backbone_cost(ctx, memory=memory)}))
    if not report.ranking:
        raise UserError("none of the backbones loaded: "
                        + "; ".join(f"{s.backbone}: {s.reason}" for s in report.skipped))
    report.ranking.sort(key=lambda r: -r.scores.logme)
    write_json(out / "assessment.json", report.to_dict())
    write_text(out / "assessment.md", render_assessment(report))
    return report
