"""Everything decided before any unit trains: config checked, data loaded, split made or reloaded, context built.

    ctx = build_context(cfg, progress, log)       # RunContext (core/context.py), shared by every unit

The run folder is checked first: config.json must match (apart from RESUMABLE settings) for a run to resume.
Under DDP every rank builds the same context; only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import inspect
import os
from pathlib import Path

from headstart.core.config import RESUMABLE, RunConfig
from headstart.pipeline.progress import stage_progress
from headstart.pipeline.state import Decision, RunContext
from headstart.core.errors import DamagedFile, UserError, first_line
from headstart.core.io import cache_dir_of, default_run_dir, ensure_writable
from headstart.modalities import MODALITIES, detect_modality
from headstart.models.device import resolve_precision
from headstart.models.factory import resolve_spec
from headstart.stats.evaluate import wilson_ci
from headstart.stats.metrics import LABELS, REBALANCE, choose_metric, imbalance_ratio, positive_class, rebalance_mode
from headstart.stats.split import load_split, make_split, save_split
from headstart.training.strategies import DEFAULT, ORDER


_LOCKS: dict[str, int] = {}      # run folders this process holds (fd of the locked file), kept until exit


def lock_run_dir(run_dir: Path) -> None:
    """One headstart process per run folder: an exclusive flock on <run>/.lock, held until the process ends (the
    kernel releases it when the process dies, so a crash or SIGKILL never leaves the folder locked)."""
    key = str(Path(run_dir).resolve())
    if key in _LOCKS:
        return
    fd = os.open(Path(run_dir) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise UserError(f"another headstart process{' (pid ' + holder + ')' if holder else ''} is running in "
                        f"{run_dir}; wait for it to finish (then run the same command to resume), or use another "
                        "--out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _LOCKS[key] = fd


BOOKKEEPING = (".lock", "config.json", "split.json")    # what headstart writes before it reads the data


@contextlib.contextmanager
def removed_on_user_error(folder: Path | None):
    """Run the block; when a UserError stops it and `folder` did not exist before, remove the folder again if it
    holds nothing but headstart's bookkeeping: a mistyped data path or a bad option leaves no empty
    runs/<name>-<time>/ behind. A folder that existed, or that holds anything else by then, stays; the bookkeeping
    files go only while this process holds the folder's lock (a second process that lost the race for a new folder
    must not delete the winner's lock and config)."""
    new = folder is not None and not Path(folder).exists()
    try:
        yield
    except UserError:
        if new:
            key = str(Path(folder).resolve())
            if key in _LOCKS:
                for name in BOOKKEEPING:
                    (Path(folder) / name).unlink(missing_ok=True)
                os.close(_LOCKS.pop(key))
            with contextlib.suppress(OSError):
                Path(folder).rmdir()        # only if empty by now
        raise


def check_out_folder(out: Path, data: str) -> None:
    """--out must not lie inside the data (its plots would become a class on the next run) and must not be
    somebody else's folder (headstart would overwrite a report.md or model/ that is not its own)."""
    out_r, data_r = out.resolve(), Path(data).resolve()
    if data_r.is_dir() and (out_r == data_r or data_r in out_r.parents):
        raise UserError(f"--out {out} lies inside the data folder {data}: its files would be read as data on the next "
                        "run; choose an output folder outside the data")
    if out.is_dir() and not (out / "config.json").exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in (".lock", "split.json"))  # split: --backbones
        if foreign:
            raise UserError(f"--out {out} is an existing folder that is not a headstart run (it holds "
                            f"{', '.join(foreign[:3])}{', …' if len(foreign) > 3 else ''}); headstart would write over "
                            "files there: choose a new or empty folder")


def prepare_run_dir(cfg: RunConfig, write: bool = True) -> Path:
    if not cfg.out:
        cfg.out = default_run_dir(cfg.data)
    run_dir = ensure_writable(Path(cfg.out)) if write else Path(cfg.out)
    saved = run_dir / "config.json"
    if saved.exists():
        old = RunConfig.load(saved).to_dict()
        new = cfg.to_dict()
        diff = sorted(k for k in new if k not in RESUMABLE and old.get(k) != new[k])
        if diff and not any(run_dir.glob("**/result.json")):     # nothing trained yet: nothing to protect
            for stale in ("split.json", "assessment.json"):      # made with the old settings
                (run_dir / stale).unlink(missing_ok=True)
        elif diff:
            raise UserError(f"{run_dir} holds a run with a different config ({', '.join(diff)} differ); "
                            "resume with the same arguments, or use a new --out folder")
    if write:
        cfg.save(saved)
    return run_dir


def make_fabric(cfg: RunConfig):
    from lightning.fabric import Fabric
    # several devices: DDP that tolerates parameters without gradients (groups not unfrozen yet)
    ddp = "auto" if cfg.devices == 1 else "ddp_find_unused_parameters_true"
    try:
        fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices, precision=resolve_precision(cfg),
                        strategy=ddp)
    except (RuntimeError, ValueError) as e:      # e.g. --accelerator cuda on a machine without a GPU
        raise UserError(f"--accelerator {cfg.accelerator} --devices {cfg.devices} is not available here "
                        f"({first_line(e, 160)}); use --accelerator auto or cpu") from None
    if cfg.devices != 1:
        fabric.launch()
    return fabric


def check_strategies(cfg: RunConfig) -> None:
    """[] means every registered strategy (written into config.json as the list of names)."""
    bad = [s for s in cfg.strategies if s not in ORDER]
    if bad:
        raise UserError(f"unknown strategy {bad[0]!r}; choose from {', '.join(ORDER)}")
    cfg.strategies = cfg.strategies or list(DEFAULT)


def warn_thin_validation(ds, split: dict, log) -> None:
    """Many classes with few items each: say once, before hours of training, that validation cannot see them all."""
    seen = len({ds.labels[i] for i in split["val"]})
    if seen < len(ds.classes):
        log(f"warning: the validation split holds {len(split['val'])} items covering {seen} of {len(ds.classes)} "
            "classes, so early stopping and the choice of arm see only those; add labels per class, or give a val/ "
            "folder (or --test-file for text) with every class")


def warn_rare_classes(ds, split: dict, log, few: int = 10) -> None:
    """Say before training which classes the test split holds too few of for their recall to mean much."""
    rare = [(c, sum(1 for i in split["test"] if ds.labels[i] == k)) for k, c in enumerate(ds.classes)]
    rare = sorted((n, c) for c, n in rare if 0 < n < few)
    if rare:
        n, c = rare[0]
        lo, hi = wilson_ci(0, n)
        log(f"warning: the test split holds only {n} item(s) of {c!r}" + (f" (and fewer than {few} of "
            f"{len(rare) - 1} more class(es))" if len(rare) > 1 else "") + f": its recall is known only roughly "
            f"(even 0 of {n} recalled has a 95% interval of {100 * lo:.0f}-{100 * hi:.0f}%); more labelled items of "
            "it, or a test/ folder with more, make the per-class numbers worth reading")


def decide_metric(cfg: RunConfig, ds, split: dict) -> Decision:
    """The run's decision metric and class weighting, from the training split's labels (stats/metrics.py)."""
    y, k = [ds.labels[i] for i in split["train"]], len(ds.classes)
    name, why = choose_metric(y, k, cfg.metric)
    return Decision(metric=name, why=why, rebalance=rebalance_mode(cfg.rebalance, y, k),
                    positive=positive_class(y, k), ratio=imbalance_ratio(y, k))


def build_context(cfg: RunConfig, progress=None, log=print, run_dir: Path | None = None,
                  lock: bool = True) -> RunContext:
    """Validate cfg, load the data, make or reload the saved split: the shared context of every unit.
    The caller's cfg is never changed: the context holds a resolved copy (modality, backbone, defaults, paths,
    strategies), which is what config.json records.
    run_dir given: use it as is (assessment folders hold several backbones, so no config.json check).
    lock: hold the run folder against other headstart processes (grid workers run inside their parent's lock)."""
    cfg = dataclasses.replace(cfg)
    cfg.validate()
    check_strategies(cfg)
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
    # absolute paths in config.json: resume and the report's "Reproduce" line work from any directory
    cfg.data = str(Path(cfg.data).resolve())
    cfg.test_file = str(Path(cfg.test_file).resolve()) if cfg.test_file else ""
    fabric = make_fabric(cfg)       # first: under DDP every rank runs what follows, and only rank 0 writes
    owner = lock and fabric.is_global_zero
    target = (run_dir or Path(cfg.out or default_run_dir(cfg.data))) if owner else None
    with removed_on_user_error(target):
        if owner:
            cfg.out = str(Path(cfg.out or target).resolve())
            if run_dir is None:
                check_out_folder(target, cfg.data)
            ensure_writable(target)
            lock_run_dir(target)
        run_dir = run_dir or prepare_run_dir(cfg, write=fabric.is_global_zero)
        ds, split = _data_and_split(cfg, modality, spec, size, run_dir, fabric.is_global_zero, log, progress)
    decision = decide_metric(cfg, ds, split)
    if decision.metric != "accuracy" or decision.rebalance != "none":
        log(f"decision metric: {LABELS[decision.metric]} ({decision.why}); {REBALANCE[decision.rebalance]}")
        warn_rare_classes(ds, split, log)        # imbalanced: the rare classes' test counts, before training
    return RunContext(cfg=cfg, spec=spec, size=size, ds=ds, split=split, run_dir=run_dir, fabric=fabric,
                      precision=resolve_precision(cfg), progress=progress, log=log, modality=modality,
                      cache_dir=cache_dir_of(cfg),
                      state=modality.prepare(ds, spec, size, cfg, **reporting(modality.prepare, f"preparing {modality.name}"
                                                                              " inputs", progress, log)),
                      decision=decision)


def reporting(fn, label: str, progress=None, log=print) -> dict:
    """{"progress": tick} for a modality method that reports progress (a `progress(n, total)` parameter: load,
    prepare), else {}: the ticker shows a bar, or logs items/s and the time left every few seconds."""
    if "progress" not in inspect.signature(fn).parameters:
        return {}
    ticker = []

    def tick(n: int, total: int) -> None:          # the total is known once the method has listed its items
        if not ticker:
            ticker.append(stage_progress(progress, log, label, total))
        ticker[0](n)
    return {"progress": tick}


def _data_and_split(cfg: RunConfig, modality, spec, size: int, run_dir: Path, writer: bool, log, progress=None):
    """The data, loaded once, and the run's split: reloaded from split.json (checked against the data), else made
    and saved (by rank 0)."""
    ds = modality.load(cfg, spec, size, **reporting(modality.load, f"reading {modality.name} files", progress, log))
    for spelled, name in (ds.stats.get("merged_labels") or {}).items():
        log(f"label {spelled!r} read as class {name!r} (the same number; a spreadsheet or pandas writes 1.0 for 1)")
    if ds.skipped:
        log(f"skipped {len(ds.skipped)} unusable item(s) (files or table rows), listed in results.json (first: "
            f"{ds.skipped[0]['path']}: {ds.skipped[0]['reason']})")
    split_path = run_dir / "split.json"
    split = None
    if split_path.exists():
        try:
            split = load_split(split_path, ds.paths, ds.labels, ds.classes, ds.hashes)
        except DamagedFile:
            if any(run_dir.glob("**/result.json")):    # units trained on it: it cannot be made again
                raise
            log(f"{split_path} was damaged and no unit has trained on it yet: making the split again")
    if split is None:
        split = make_split(ds.sources, ds.labels, ds.classes, cfg.val_fraction, cfg.test_fraction, cfg.split_seed,
                           groups=ds.groups or None)
        if writer:
            save_split(split_path, split, ds.paths, ds.labels, ds.classes, ds.hashes)
    warn_thin_validation(ds, split, log)
    return ds, split
