"""`headstart assess` and `headstart run --backbones` as typed records: assessment.json (every backbone scored) and
comparison.json (which backbone, measured on one split).

    cmp = Comparison.from_dict(read_json(out / "comparison.json"))
    cmp.recommendation.recommended, cmp.rows["efficientnet_lite0"].score, cmp.pairs["a - b"].points
"""
from __future__ import annotations

from dataclasses import dataclass, field

from headstart.core.findings import Assessment, BackboneCost
from headstart.core.records import Difference, Failable, Record, Skipped


@dataclass
class AssessReport(Record):
    """assessment.json of `headstart assess`: the backbones that loaded, best LogME first."""
    data: str = ""
    ranking: list[Assessment] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ranked_by: str = "LogME (higher is better)"


@dataclass
class BackboneRow(Failable):
    """One trained backbone: its best transfer arm on validation, that arm's test numbers, what it costs; when every
    transfer arm failed, only `failed`, cost, why_trained and run."""
    arm: str = ""
    val_acc: float = 0.0
    val_correct: list | None = None
    val_score: float = 0.0
    val_credit: list | None = None
    accuracy: float = 0.0
    accuracy_ci: list = field(default_factory=lambda: [0.0, 0.0])
    score: float = 0.0
    score_ci: list = field(default_factory=lambda: [0.0, 0.0])
    arm_seconds: float | None = None
    transfer_seconds: float = 0.0
    flops_train: float | None = None
    cost: BackboneCost = field(default_factory=BackboneCost)
    why_trained: str = ""
    run: str = ""
    input_size: int | None = None
    OPTIONAL = ("failed",)
    KEEP_ON_FAIL = ("cost", "why_trained", "run")


@dataclass
class Agreement(Record):
    """Kendall tau between the assessment's order and the measured scores (pipeline/compare.rank_agreement)."""
    tau: float | None = None
    concordant: int = 0
    discordant: int = 0
    tied: int = 0
    pairs: int = 0
    words: str = ""


@dataclass
class BackboneChoice(Record):
    """pipeline/compare.recommend_backbone: the backbone to deploy and why."""
    recommended: str | None = None
    best_on_validation: str | None = None
    tied: list[str] = field(default_factory=list)
    alternative: str | None = None
    validation_noise: float = 0.0
    paired: bool = False
    margin: float = 0.0
    why: str = ""


@dataclass
class Baseline(Record):
    accuracy: float = 0.0
    accuracy_ci: list = field(default_factory=lambda: [0.0, 0.0])
    val_acc: float = 0.0                      # its validation score in the run's decision metric
    provenance: dict | None = None

    @property
    def bounded(self) -> bool:
        return (self.provenance or {}).get("kind") == "bounded"


@dataclass
class NotTrained(Record):
    cost: BackboneCost = field(default_factory=BackboneCost)


@dataclass
class Comparison(Record):
    data: str = ""
    out: str = ""
    assessed: list[str] = field(default_factory=list)       # every backbone that loaded, by the assessment's rank
    skipped: list[Skipped] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    primary: str = ""                                         # the run that holds scratch, classic and the split
    rows: dict[str, BackboneRow] = field(default_factory=dict)
    pairs: dict[str, Difference] = field(default_factory=dict)
    agreement: Agreement = field(default_factory=Agreement)
    recommendation: BackboneChoice = field(default_factory=BackboneChoice)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    n_val: int = 0
    n_test: int = 0
    summary: str = ""
    metric: str = "accuracy"
    not_trained: dict[str, NotTrained] = field(default_factory=dict)
