"""One controlled experiment: every strategy on the same saved split and seeds, evaluated once on test.

    results = run_experiment(RunConfig(data="path/to/images"))   # writes the run folder, returns results.json

Run folder: config.json, split.json, <strategy>/seed<k>/{result.json, metrics.csv, weights.safetensors},
results.json, report.md, model/ (the recommended model). A finished unit (strategy, seed) is never retrained:
re-running the same command resumes. A different config or changed data under the same folder is refused.
"""
from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from headstart.config import RunConfig
from headstart.device import resolve_precision
from headstart.errors import UserError
from headstart import units
from headstart.io import write_json, write_text

ORDER = ["classic", "linear-probe", "finetune", "scratch"]     # also the tie-break order: cheaper first


# settings that may change when a run resumes: where and how units run (activation checkpointing recomputes the
# same values), what the summary prices, which extra curve points are added (finished units never depend on them)
RESUMABLE = ("out", "devices", "num_workers", "jobs", "executor", "grad_checkpointing", "cost_per_label",
             "price_per_hour", "device_watts", "target_metric", "curve")


def default_cache_dir() -> Path:
    return Path(os.environ.get("HEADSTART_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
                / "headstart")


def ensure_writable(run_dir: Path) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to the output folder {run_dir} ({e.strerror}); choose another with --out") \
            from None
    return run_dir


def prepare_run_dir(cfg: RunConfig, write: bool = True) -> Path:
    if not cfg.out:
        name = Path(cfg.data).resolve().name or "data"
        cfg.out = str(Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}")
    run_dir = ensure_writable(Path(cfg.out)) if write else Path(cfg.out)
    saved = run_dir / "config.json"
    if saved.exists():
        old = RunConfig.load(saved).to_dict()
        new = cfg.to_dict()
        diff = sorted(k for k in new if k not in RESUMABLE and old.get(k) != new[k])
        if diff:
            raise UserError(f"{run_dir} holds a run with a different config ({', '.join(diff)} differ); "
                            "resume with the same arguments, or use a new --out folder")
    if write:
        cfg.save(saved)
    return run_dir


def _make_fabric(cfg: RunConfig):
    from lightning.fabric import Fabric
    # several devices: DDP that tolerates parameters without gradients (groups not unfrozen yet)
    strategy = "auto" if cfg.devices == 1 else "ddp_find_unused_parameters_true"
    fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices, precision=resolve_precision(cfg),
                    strategy=strategy)
    if cfg.devices != 1:
        fabric.launch()
    return fabric


def prepare(cfg: RunConfig, progress=None, log=print, run_dir: Path | None = None):
    """Validate cfg, load the data, make or reload the saved split: the shared context of every unit.
    run_dir given: use it as is (assessment folders hold several backbones, so no config.json check)."""
    from headstart.backbones import resolve_spec
    from headstart.modality import MODALITIES, detect_modality
    from headstart.split import load_split, make_split, save_split

    bad = [s for s in cfg.strategies if s not in ORDER]
    if bad:
        raise UserError(f"unknown strategy {bad[0]!r}; choose from {', '.join(ORDER)}")
    if cfg.augment not in ("crop-flip", "crop", "none"):
        raise UserError(f"augment {cfg.augment!r} unknown; choose crop-flip, crop or none")
    if cfg.bn_policy not in ("eval-all", "train-unfrozen"):
        raise UserError(f"bn_policy {cfg.bn_policy!r} unknown; choose eval-all or train-unfrozen")
    modality = MODALITIES[detect_modality(cfg.data, cfg.modality)]()
    cfg.modality = modality.name
    cfg.backbone = cfg.backbone or modality.default_backbone
    cfg.resolve(modality.defaults)
    spec = resolve_spec(cfg.backbone)
    if spec.modality != modality.name:
        raise UserError(f"backbone {cfg.backbone} is for {spec.modality} but the data is {modality.name}; "
                        f"pass a {modality.name} backbone (default: {modality.default_backbone})")
    size = cfg.image_size or spec.input_size
    if cfg.devices != 1 and not cfg.out:
        raise UserError("--devices above 1 needs --out: every process must write to the same run folder")
    fabric = _make_fabric(cfg)       # first: under DDP every rank runs what follows, and only rank 0 writes
    run_dir = run_dir or prepare_run_dir(cfg, write=fabric.is_global_zero)
    ds = modality.load(cfg, spec, size)
    if ds.skipped:
        log(f"skipped {len(ds.skipped)} unreadable file(s), listed in results.json (first: "
            f"{ds.skipped[0]['path']}: {ds.skipped[0]['reason']})")
    split_path = run_dir / "split.json"
    if split_path.exists():
        split = load_split(split_path, ds.paths, ds.labels, ds.classes)
    else:
        split = make_split(ds.sources, ds.labels, ds.classes, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        if fabric.is_global_zero:
            save_split(split_path, split, ds.paths, ds.labels, ds.classes)
    ctx = units.Context(cfg=cfg, spec=spec, size=size, ds=ds, split=split, run_dir=run_dir,
                        fabric=fabric, precision=resolve_precision(cfg), progress=progress, log=log, modality=modality,
                        cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir())
    ctx.modality_stats = modality.prepare(ctx)
    return ctx


def run_experiment(cfg: RunConfig, progress=None, log=print) -> dict:
    """Run (or resume) the experiment described by cfg and return the results dict."""

    t_start = time.perf_counter()
    ctx = prepare(cfg, progress, log)
    strategies = [s for s in ORDER if s in cfg.strategies]
    assessment, leakage = pretraining_checks(ctx)
    from headstart.grid import plan, run_grid, summarize_curve
    run_grid(ctx, plan(cfg, strategies))
    results = summarize(ctx, strategies)
    results["leakage"] = leakage
    results["curve"] = summarize_curve(ctx, strategies)
    if assessment:
        from headstart.assess import predicted_vs_measured
        results["assessment"] = {**assessment, "check": predicted_vs_measured(assessment, results)}
    results["wall_seconds_this_invocation"] = time.perf_counter() - t_start
    if ctx.fabric.is_global_zero:
        from headstart.export import export_recommended
        export_recommended(ctx, results)
        from headstart.plots import make_plots
        from headstart.report import render_markdown
        from headstart.report_cost import render_html
        results["plots"] = make_plots(results, ctx.run_dir)
        write_json(ctx.run_dir / "results.json", results)
        md = render_markdown(results)
        write_text(ctx.run_dir / "report.md", md)
        write_text(ctx.run_dir / "report.html", render_html(md, ctx.run_dir, f"headstart report: {ctx.ds.root}"))
    return results


def pretraining_checks(ctx) -> tuple[dict | None, dict]:
    """Assessment (cached in assessment.json) then duplicates/leaks (and --dedupe, which changes ctx.split)."""
    assessment = run_assessment(ctx) if ctx.cfg.assess else None
    return assessment, check_leakage(ctx)


def check_leakage(ctx) -> dict:
    """Exact and near duplicates across the splits, before any training; --dedupe drops the train side."""
    from headstart.leakage import dedupe_train, find_duplicates, public
    cfg = ctx.cfg
    feats = units.features(ctx) if cfg.near_dup_threshold < 1 else None
    report = find_duplicates(ctx.ds, ctx.split, feats, cfg.near_dup_threshold)
    c = report["counts"]
    if c["leak"] or c["conflict"] or c["duplicate"]:
        ctx.log(f"duplicates: {c['leak']} across splits (leaks), {c['conflict']} with conflicting labels, "
                f"{c['duplicate']} within a split ({c['exact']} exact, {c['near']} near); listed in results.json"
                + ("" if cfg.dedupe else "; --dedupe drops the train side"))
    out = public(report)
    if cfg.dedupe:
        drop = set(dedupe_train(report, ctx.split))
        ctx.split = {**ctx.split, "train": [i for i in ctx.split["train"] if i not in drop]}
        out["removed_from_train"] = [ctx.ds.paths[i] for i in sorted(drop)]
        if drop:
            ctx.log(f"--dedupe: removed {len(drop)} train item(s)")
    return out


def run_assessment(ctx) -> dict:
    """The pre-training assessment of this run (assessment.json; reused when the run resumes)."""
    from headstart.assess import assess
    from headstart.io import read_json
    path = ctx.run_dir / "assessment.json"
    if path.exists():
        return read_json(path)
    a = assess(ctx)
    ctx.log(f"assessment: {a['verdict']['label']}; try {a['verdict']['try_first']} first "
            f"({'; '.join(a['verdict']['evidence'][:1])})")
    if ctx.fabric.is_global_zero:
        write_json(path, a)
    return a


def summarize(ctx, strategies: list[str]) -> dict:
    from headstart.evaluate import metrics, paired_difference

    cfg, ds, split = ctx.cfg, ctx.ds, ctx.split
    y_test = np.asarray(ds.labels)[split["test"]]
    per_strategy, probs = {}, {}
    for s in strategies:
        res = [units.unit_result(ctx.run_dir, s, seed) for seed in range(cfg.seeds)]
        failed = [r for r in res if r and r.get("failed")]
        ok = [r for r in res if r and not r.get("failed")]
        if not ok:
            per_strategy[s] = {"failed": failed[0]["failed"] if failed else "not run"}
            continue
        probs[s] = [np.asarray(r["test_probs"], dtype=np.float64) for r in ok]
        m = metrics(y_test, probs[s], ds.classes, reps=cfg.bootstrap)
        per_strategy[s] = {
            **m,
            "val_acc": float(np.mean([r["val_acc"] for r in ok])),
            "val_loss": float(np.mean([r["val_loss"] for r in ok])),
            "train_seconds": float(np.mean([r["train_seconds"] for r in ok])),
            "epochs_run": [r["epochs_run"] for r in ok], "epoch_budget": ok[0]["epoch_budget"],
            "best_epochs": [r.get("best_epoch") for r in ok],
            "stopped_early": any(r["stopped_early"] for r in ok), "overfit": any(r["overfit"] for r in ok),
            "trainable_params": ok[0]["trainable_params"], "total_params": ok[0]["total_params"],
            "policy": ok[0]["policy"], "events": ok[0].get("events", []),
            "failed_seeds": [r["seed"] for r in failed],
            "compute": _mean_compute([r.get("compute") for r in ok]), "trunk_cache": ok[0].get("trunk_cache"),
            "precision": ok[0].get("precision", resolve_precision(cfg)),
            "provenance": provenance(ok),
        }
    deltas = {}
    for base in ("scratch", "classic"):             # every transfer arm against every from-scratch baseline
        for s in probs:
            if base in probs and s in ("linear-probe", "finetune"):
                deltas[f"{s} - {base}"] = paired_difference(y_test, probs[s], probs[base], cfg.bootstrap)
    ranked = sorted(probs, key=lambda s: (-round(per_strategy[s]["val_acc"], 6), per_strategy[s]["val_loss"],
                                          ORDER.index(s)))
    if not ranked:
        raise UserError("every strategy failed; see the 'failed' entries in the unit result.json files")
    counts = {r: {c: int(sum(1 for i in split[r] if ds.labels[i] == k)) for k, c in enumerate(ds.classes)}
              for r in ("train", "val", "test")}
    return {
        "headstart_version": _version(),
        "config": cfg.to_dict(),
        "precision": resolve_precision(cfg), "device": str(ctx.fabric.device),
        "backbone": ctx.spec.to_dict(),
        "image_size": ctx.size,
        "data": {"root": str(ds.root), "modality": ctx.modality.name, "layout": ds.layout, "classes": ds.classes,
                 "n_items": len(ds), "modality_stats": ctx.modality_stats,
                 "fingerprint": ds.fingerprint(), "roles": split["roles"], "counts": counts,
                 "skipped": ds.skipped},
        "strategies": per_strategy,
        "paired_differences": deltas,
        "recommended": ranked[0],
        "recommendation_basis": "highest mean validation accuracy (ties: lower validation loss, then cheaper "
                                "strategy); the test split was not used for this choice",
    }


def provenance(units_ok: list[dict]) -> dict:
    """Full, or bounded: which seeds racing stopped, at which epoch, with which bound (racing.py)."""
    raced = [{"seed": r["seed"], **r["racing"]} for r in units_ok if (r.get("racing") or {}).get("stop")]
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
