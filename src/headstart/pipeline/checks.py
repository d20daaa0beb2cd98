"""Checks before any unit trains: the transferability assessment (cached in assessment.json) and duplicates or
leaks across the splits (with --dedupe, the train side is dropped and the context's split changes).

    assessment, leakage = pretraining_checks(ctx)
"""
from __future__ import annotations

from headstart.pipeline.state import RunContext
from headstart.core.errors import DamagedFile, UserError, one_line
from headstart.core.io import read_json, write_json
from headstart.pipeline.assess import assess
from headstart.pipeline.frozen import features
from headstart.stats.leakage import dedupe_train, find_duplicates, public


def pretraining_checks(ctx: RunContext) -> tuple[dict | None, dict]:
    """Assessment (cached in assessment.json) then duplicates/leaks (and --dedupe, which changes ctx.split)."""
    with ctx.stages("assessment"):
        assessment = run_assessment(ctx) if ctx.cfg.assess else None
    with ctx.stages("duplicates"):
        return assessment, check_leakage(ctx)


def check_leakage(ctx: RunContext) -> dict:
    """Exact and near duplicates across the splits, before any training; --dedupe drops the train side."""
    cfg = ctx.cfg
    small = ctx.size < ctx.modality.min_near_dup_size
    feats = features(ctx) if cfg.near_dup_threshold < 1 and not small else None
    report = find_duplicates(ctx.ds, ctx.split, feats, cfg.near_dup_threshold, near_kind=ctx.modality.near_dup_kind)
    c = report["counts"]
    if c["leak"] or c["conflict"] or c["duplicate"]:
        ctx.log(f"duplicates: {c['leak']} across splits (leaks), {c['conflict']} with conflicting labels, "
                f"{c['duplicate']} within a split ({c['exact']} exact, {c['normalised']} normalised, "
                f"{c['near'] - c['similar']} near); listed in results.json"
                + ("" if cfg.dedupe else "; --dedupe drops the train side"))
    if c["similar"]:
        ctx.log(f"similar items: {c['similar']} pair(s) close in embedding (not counted as duplicates or conflicts; "
                "listed in results.json)")
    out = public(report)
    if small and cfg.near_dup_threshold < 1:
        out["near_skipped"] = (f"near duplicates not searched at {ctx.size} px input: below "
                               f"{ctx.modality.min_near_dup_size} px distinct photos look alike to the backbone; exact "
                               "duplicates are still found")
        ctx.log(out["near_skipped"])
    if cfg.dedupe:
        drop = set(dedupe_train(report, ctx.split))
        ctx.split = {**ctx.split, "train": [i for i in ctx.split["train"] if i not in drop]}
        out["removed_from_train"] = [ctx.ds.paths[i] for i in sorted(drop)]
        if drop:
            ctx.log(f"--dedupe: removed {len(drop)} train item(s)")
    return out


def run_assessment(ctx: RunContext) -> dict:
    """The pre-training assessment of this run (assessment.json; reused when the run resumes). It informs, it does
    not decide: if it fails, the run goes on and the report says why ({"failed": reason})."""
    path = ctx.run_dir / "assessment.json"
    if path.exists():
        try:
            return read_json(path)
        except DamagedFile:
            ctx.log(f"{path} was damaged: assessing again")
    try:
        a = assess(ctx)
    except UserError:
        raise
    except Exception as e:
        reason = one_line(e)
        ctx.log(f"assessment failed ({reason}); training goes on without it")
        return {"failed": reason}
    ctx.log(f"assessment: {a['verdict']['label']}; try {a['verdict']['try_first']} first "
            f"({'; '.join(a['verdict']['evidence'][:1])})")
    if ctx.fabric.is_global_zero:
        write_json(path, a)
    return a
