"""Typed records of what a run produced: one unit's result.json, and where units live in a run folder.

    r = unit_result(run_dir, "finetune", 0)        # UnitResult, or None while the unit has not finished
    r.val_acc, r.failed, r.racing                   # attributes, not string keys
    write_unit_result(unit_dir, r)                  # result.json, atomically: the unit's commit point

result.json files written by older versions load too: unknown keys are kept in `extra`, missing ones default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from headstart.core.errors import DamagedFile
from headstart.core.io import inside, read_json, write_json


@dataclass
class UnitResult:
    strategy: str = ""
    seed: int = 0
    failed: str | None = None            # a one-line reason when the arm failed (the others go on)
    val_loss: float | None = None
    val_acc: float | None = None
    val_score: float | None = None       # the run's decision metric on validation (argmax of val_probs)
    test_probs: list = field(default_factory=list)     # (n_test, classes), read once after every choice is made
    val_probs: list = field(default_factory=list)      # (n_val, classes) of the kept model: paired comparisons of arms
                                                       # on validation ([] in units written before they were kept)
    history: list = field(default_factory=list)        # per epoch (trained arms) or per C (probe, classic)
    epochs_run: int = 0
    epoch_budget: int = 0
    best_epoch: int | None = None        # -1: the starting weights were kept
    start_val: dict | None = None
    stopped_early: bool = False
    overfit: bool = False
    events: list = field(default_factory=list)
    train_seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0
    policy: dict = field(default_factory=dict)         # how the arm was trained (strategy.describe)
    n_train: int = 0
    wall_seconds: float = 0.0
    node: str = ""                       # the host that ran the unit (a Ray cluster spreads them)
    compute: dict | None = None          # FLOPs, time, memory, energy, money (training/costs.py)
    precision: str | None = None
    racing: dict | None = None           # the last racing decision (stats/racing.py Decision), scratch only
    trunk_cache: dict | None = None
    details: dict = field(default_factory=dict)        # arm-specific facts (augment, threads, folded pairs, ...)

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def raced(self) -> bool:
        return bool((self.racing or {}).get("stop"))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        details = d.pop("details")
        if self.failed is None:
            d.pop("failed")
        return {**d, **details}

    @classmethod
    def from_dict(cls, d: dict) -> UnitResult:
        names = {f.name for f in dataclasses.fields(cls)} - {"details"}
        return cls(**{k: v for k, v in d.items() if k in names},
                   details={k: v for k, v in d.items() if k not in names})


def unit_dir(run_dir: Path, strategy: str, seed: int) -> Path:
    return inside(run_dir, strategy, f"seed{seed}")


def unit_result(run_dir: Path, strategy: str, seed: int) -> UnitResult | None:
    """A finished unit's result, or None while the unit has not finished. A damaged result.json (truncated, empty,
    not an object) is moved aside to result.json.damaged, so the unit counts as unfinished and trains again
    (pipeline/grid.run_grid says so in the run log)."""
    path = unit_dir(run_dir, strategy, seed) / "result.json"
    if not path.exists():
        return None
    try:
        d = read_json(path)
        if not isinstance(d, dict):
            raise DamagedFile(f"{path} holds no result object")
        return UnitResult.from_dict(d)
    except (DamagedFile, TypeError):
        path.replace(path.with_name(DAMAGED))
        return None


DAMAGED = "result.json.damaged"


def write_unit_result(folder: Path, r: UnitResult) -> None:
    write_json(folder / "result.json", r.to_dict())


