"""Experiment trackers, fed after a run from what the run wrote (each unit's metrics.csv, results.json), through
Lightning's loggers: TensorBoard (`--tracker tensorboard`, needs tensorboard or tensorboardX) or MLflow
(`--tracker mlflow`, needs mlflow; MLFLOW_TRACKING_URI chooses the server, else ./mlruns).

    track(results, run_dir, "tensorboard")      # <run>/tensorboard/<strategy>/seed<k>: per-epoch curves + test score

Feeding from the files, not from inside the training loop, keeps the loop boring and makes a resumed or finished
run loggable after the fact (`headstart run` on a finished run with --tracker logs it without retraining).
"""
from __future__ import annotations

import csv
from pathlib import Path

from headstart.core.errors import UserError
from headstart.core.results import unit_dir
from headstart.core.run_results import RunResults

TRACKERS = ("", "tensorboard", "mlflow")


def _logger(kind: str, run_dir: Path, strategy: str, seed: int):
    try:
        if kind == "tensorboard":
            from lightning.fabric.loggers import TensorBoardLogger
            return TensorBoardLogger(run_dir / "tensorboard", name=strategy, version=f"seed{seed}",
                                     default_hp_metric=False)
        from lightning.pytorch.loggers import MLFlowLogger
        return MLFlowLogger(experiment_name=f"headstart-{run_dir.name}", run_name=f"{strategy}-seed{seed}")
    except ImportError as e:
        raise UserError(f"{_needs(kind)} ({e})") from None


def _needs(kind: str) -> str:
    return (f"--tracker {kind} needs " + ("tensorboard or tensorboardX: pip install 'headstart[tensorboard]'"
                                         if kind == "tensorboard" else "mlflow: pip install 'headstart[mlflow]'"))


def check_tracker(kind: str) -> None:
    """Before any training: the tracker's library is installed (a long run must not end on a missing package)."""
    import importlib.util
    mods = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",)}.get(kind, ())
    if mods and not any(importlib.util.find_spec(m) for m in mods):
        raise UserError(_needs(kind))


def track(results: RunResults, run_dir: str | Path, kind: str) -> list[str]:
    """Log every finished unit of the main experiment; returns what was logged ("strategy/seed")."""
    results = RunResults.of(results)
    if kind not in TRACKERS:
        raise UserError(f"--tracker {kind!r} unknown; choose tensorboard or mlflow")
    if not kind:
        return []
    run_dir, done = Path(run_dir), []
    for s, m in results.ok.items():
        for seed in range(results.config.seeds):
            path = unit_dir(run_dir, s, seed) / "metrics.csv"
            logger = _logger(kind, run_dir, s, seed)
            logger.log_hyperparams({"strategy": s, "seed": seed, "backbone": results.backbone.name,
                                    "n_train": results.data.n_train})
            if path.exists():
                with open(path, newline="") as f:
                    for step, row in enumerate(csv.DictReader(f)):    # epochs; a probe's rows are its C grid
                        logger.log_metrics({k: float(v) for k, v in row.items() if k != "epoch" and v
                                            and _number(v)}, step=int(row.get("epoch", step)))
            logger.log_metrics({"test/accuracy": m.accuracy_per_seed[seed] if seed < len(m.accuracy_per_seed)
                                else m.accuracy, "val/accuracy": m.val_acc}, step=m.epoch_budget or 0)
            logger.finalize("success")
            done.append(f"{s}/seed{seed}")
    return done


def _number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False
