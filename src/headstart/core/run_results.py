"""results.json as typed records: what `pipeline/summarize` produces, `app/run` completes and every report, the CLI
and the Python API read.

    res = RunResults.from_dict(read_json(run / "results.json"))     # files from older versions load too
    res.recommended, res.arms["finetune"].score, res.difference("finetune", "scratch").points
    res.to_dict()                                                    # the same JSON users read

`headstart.run(...)` returns it (`headstart.Results` adds the verdict in words); `res.raw` is its JSON form.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from headstart.core.config import RunConfig
from headstart.core.findings import Assessment, LabelIssues, Leakage
from headstart.core.records import Difference, Failable, Record, Skipped
from headstart.core.sections import (BackboneComparisonRef, Curve, ExportedModel, Gallery, GridCost, Prediction,
                                    Suggestions)


@dataclass
class Compute(Record):
    """One arm's bill (training/costs.py, pipeline/compute.py), averaged over seeds."""
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_gib: float = 0.0
    flops_train: float | None = None           # None: a scikit-learn arm (not counted)
    flops_inference_per_item: float | None = None
    device: str = "cpu"
    device_hours: float = 0.0
    energy_kwh: float = 0.0
    money: float = 0.0
    price_per_hour: float = 0.0
    watts: float = 0.0


@dataclass
class Provenance(Record):
    kind: str = "full"                         # full | bounded (racing stopped a seed: its numbers are bounds)
    raced: list[dict] = field(default_factory=list)


@dataclass
class OperatingPoint(Record):
    seed: int = 0
    threshold: float | None = None             # None: argmax
    why: str = "argmax"


@dataclass
class Binary(Record):
    """The positive (rarer) class of a binary task, at the operating point."""
    positive: str = ""
    precision: float = 0.0
    recall: float = 0.0
    roc_auc: float | None = None
    pr_auc: float | None = None


@dataclass
class TrunkCache(Record):
    """The frozen trunk computed once for cached augmented views (training/trunk_cache.py)."""
    views: int = 0
    first_trained_block: int | None = None
    first_trained_stage: str | None = None
    seconds: float = 0.0
    dtype: str = "float32"
    flops_train: float | None = None
    OPTIONAL = ("flops_train",)


@dataclass
class ArmSummary(Failable):
    """One strategy over its seeds: test numbers with CIs (stats/evaluate.metrics), validation, how it trained; an
    arm that failed (or never ran) writes only `failed`."""
    n_test: int = 0
    seeds: int = 0
    accuracy: float = 0.0
    accuracy_ci: list = field(default_factory=lambda: [0.0, 0.0])
    accuracy_per_seed: list = field(default_factory=list)
    macro_f1: float = 0.0
    macro_f1_ci: list = field(default_factory=lambda: [0.0, 0.0])
    balanced_accuracy: float | None = None
    metric: str = "accuracy"
    score: float = 0.0                         # the run's decision metric (accuracy in runs from before it)
    score_ci: list = field(default_factory=lambda: [0.0, 0.0])
    per_class_recall: dict[str, float] = field(default_factory=dict)
    per_class_recall_ci: dict[str, list] = field(default_factory=dict)
    per_class_n: dict[str, int] = field(default_factory=dict)
    confusion: list = field(default_factory=list)
    collapse: dict = field(default_factory=dict)
    binary: Binary | None = None
    val_acc: float = 0.0
    val_score: float = 0.0
    val_correct: list | None = None            # per validation item, the share of seeds right (ties are paired)
    val_credit: list | None = None             # the same in the decision metric's per-item weights
    val_collapse: dict | None = None
    val_loss: float = 0.0
    train_seconds: float = 0.0
    epochs_run: list[int] = field(default_factory=list)
    epoch_budget: int = 0
    best_epochs: list = field(default_factory=list)
    stopped_early: bool = False
    overfit: bool = False
    trainable_params: int = 0
    total_params: int = 0
    policy: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    failed_seeds: list = field(default_factory=list)
    compute: Compute | None = None
    trunk_cache: TrunkCache | None = None
    precision: str | None = None
    provenance: Provenance = field(default_factory=Provenance)
    operating_point: list[OperatingPoint] | None = None
    input_sizes: list[dict] | None = None
    OPTIONAL = ("failed", "binary", "val_correct", "val_credit", "val_collapse", "operating_point", "input_sizes")

    @classmethod
    def upgrade(cls, d: dict) -> dict:
        if "failed" not in d and "accuracy" in d:      # runs from before the decision metric: it was accuracy
            d.setdefault("score", d["accuracy"])
            d.setdefault("score_ci", d.get("accuracy_ci", [0.0, 0.0]))
        if "failed" not in d and "val_acc" in d:
            d.setdefault("val_score", d["val_acc"])
        return d

    @property
    def bounded(self) -> bool:
        """Racing stopped a seed before its budget: the numbers are bounds, not final values."""
        return self.provenance.kind == "bounded"

    @property
    def seconds(self) -> float:
        """What the arm cost in wall time: its unit's (shared feature pass included), else its training loop's."""
        return self.compute.wall_seconds if self.compute else self.train_seconds

    @property
    def threshold(self) -> float | None:
        """The first seed's operating threshold on the positive class (None: argmax)."""
        return self.operating_point[0].threshold if self.operating_point else None


@dataclass
class Recommendation(Record):
    """pipeline/summarize.choose: the arm to deploy, from validation only."""
    recommended: str = ""
    best_on_validation: str = ""
    tied_within_noise: list[str] = field(default_factory=list)
    validation_noise: float = 0.0
    paired: bool = False
    n_val: int = 0
    passed_over_collapsed: list[str] = field(default_factory=list)
    kept_starting_weights: list[str] = field(default_factory=list)


@dataclass
class Roles(Record):
    """One value per split role (train / val / test)."""
    train: dict | str | None = None
    val: dict | str | None = None
    test: dict | str | None = None

    def __iter__(self):
        return iter((("train", self.train), ("val", self.val), ("test", self.test)))


@dataclass
class DataSummary(Record):
    root: str = ""
    modality: str = ""
    layout: str = ""
    classes: list[str] = field(default_factory=list)
    n_items: int = 0
    modality_stats: dict = field(default_factory=dict)
    fingerprint: str = ""
    roles: Roles = field(default_factory=Roles)          # where each split came from
    counts: Roles = field(default_factory=Roles)         # items per class in each split
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def n_train(self) -> int:
        return sum((self.counts.train or {}).values())


@dataclass
class MetricInfo(Record):
    """The decision metric (pipeline/state.Decision) and why."""
    name: str = "accuracy"
    why: str = ""
    rebalance: str = "none"
    imbalance_ratio: float = 1.0
    positive_class: str | None = None
    label: str = "accuracy"


@dataclass
class BackboneInfo(Record):
    """The backbone's spec (models/registry.BackboneSpec) as the run recorded it."""
    name: str = ""
    arch: str = ""
    input_size: int = 0
    crop_pct: float = 1.0
    mean: list = field(default_factory=list)
    std: list = field(default_factory=list)
    source: str = ""
    source_classes: int = 0
    modality: str = ""
    path: str = ""
    family: str = ""


@dataclass
class RunResults(Record):
    headstart_version: str = "dev"
    config: RunConfig = field(default_factory=RunConfig)
    metric: MetricInfo | None = None                     # None: a run from before the decision metric (accuracy)
    precision: str = ""
    device: str = ""
    backbone: BackboneInfo = field(default_factory=BackboneInfo)
    image_size: int = 0
    input: str | None = None
    data: DataSummary = field(default_factory=DataSummary)
    strategies: dict[str, ArmSummary] = field(default_factory=dict)
    paired_differences: dict[str, Difference] = field(default_factory=dict)    # "finetune - scratch" -> Difference
    recommended: str = ""
    recommendation: Recommendation = field(default_factory=Recommendation)
    predictions: str | None = None                       # predictions.csv: every arm, seed and item (val, test)
    recommendation_basis: str = ""
    label_issues: LabelIssues | None = None
    leakage: Leakage | None = None
    curve: Curve | None = None
    assessment: Assessment | None = None
    wall_seconds_this_invocation: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)   # wall seconds per stage of this invocation
    grid: GridCost | None = None                          # where the units ran and what the grid's wall time was
    model: ExportedModel | None = None
    plots: dict[str, str] = field(default_factory=dict)
    gallery: Gallery | None = None
    suggestions: Suggestions | None = None
    backbone_comparison: BackboneComparisonRef | None = None
    OPTIONAL = ("metric", "predictions", "label_issues", "assessment", "model", "gallery", "suggestions",
                "backbone_comparison", "grid")

    # --- what the Python API and the reports ask of a run ---
    @property
    def arms(self) -> dict[str, ArmSummary]:
        return self.strategies

    @property
    def ok(self) -> dict[str, ArmSummary]:
        """The arms that finished (at least one seed)."""
        return {s: m for s, m in self.strategies.items() if m.ok}

    @property
    def metric_name(self) -> str:
        return self.metric.name if self.metric else "accuracy"

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out)

    @property
    def model_dir(self) -> Path | None:
        return Path(self.model.path) if self.model else None

    @property
    def report(self) -> Path:
        return self.run_dir / "report.md"

    @property
    def differences(self) -> dict[str, Difference]:
        return self.paired_differences

    @property
    def raw(self) -> dict:
        """results.json as a dict."""
        return self.to_dict()

    def predictions_rows(self) -> list[dict]:
        """The run's predictions.csv (every arm, seed and validation / test item) as rows, numbers as numbers:
        `pandas.DataFrame(res.predictions_rows())` is one call away. [] for runs from before it."""
        path = self.run_dir / (self.predictions or "predictions.csv")
        if not path.exists():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            for k, v in row.items():
                row[k] = int(v) if k in ("seed", "correct") else float(v) if k.startswith("p_") else v
        return rows

    def prediction_records(self, **where) -> list[Prediction]:
        """predictions.csv as records, filtered by field values: res.prediction_records(split="test", strategy="finetune")."""
        rows = [Prediction.from_row(r) for r in self.predictions_rows()]
        return [p for p in rows if all(getattr(p, k) == v for k, v in where.items())]

    def difference(self, a: str, b: str) -> Difference:
        return self.paired_differences[f"{a} - {b}"]

    def best_arm(self, names) -> str | None:
        """The arm among `names` with the best validation score (the decision metric); a tie goes to the lower
        validation loss, then the first listed (the order pipeline/summarize.choose ranks by). None if none of them
        finished."""
        ok = self.ok
        names = [s for s in names if s in ok]
        return min(names, key=lambda s: (-round(ok[s].val_score, 6), ok[s].val_loss, names.index(s)), default=None)
