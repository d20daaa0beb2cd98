"""What the checks before training found, as typed records: the assessment (assessment.json, and results.json's
"assessment" with its predicted-vs-measured check) and the duplicate / leak search (results.json's "leakage").

    a = Assessment.from_dict(read_json(run / "assessment.json"))
    a.scores.logme, a.verdict.try_first, a.check.rows["vs_scratch"].agrees
"""
from __future__ import annotations

from dataclasses import dataclass, field

from headstart.core.records import Failable, Record


@dataclass
class Scores(Record):
    """Transferability on the frozen features (stats/transferability.py); k-NN in the decision metric."""
    logme: float = 0.0
    hscore: float = 0.0
    knn: float = 0.0
    knn_raw: float = 0.0
    leep: float | None = None
    nce: float | None = None
    OPTIONAL = ("leep", "nce")


@dataclass
class Verdict(Record):
    """The two predictions (vs the classic baseline, vs scratch) and the strategy to try first."""
    label: str = ""
    gain: float = 0.0
    evidence: list[str] = field(default_factory=list)
    try_first: str = ""
    why: str = ""
    vs_classic: dict = field(default_factory=dict)
    vs_scratch: dict = field(default_factory=dict)


@dataclass
class CheckRow(Record):
    """One prediction against its paired comparison on test."""
    predicted: str | None = None
    baseline: str = ""
    measured: str = "not measured"
    agrees: bool | None = None                 # None: nothing to check (uncertain, or too few test items)
    difference: float | None = None
    ci: list | None = None
    bounded: bool | None = None
    OPTIONAL = ("difference", "ci", "bounded")


@dataclass
class Check(Record):
    best_transfer: str | None = None
    rows: dict[str, CheckRow] = field(default_factory=dict)     # vs_scratch, vs_classic
    try_first: str = ""
    try_first_agrees: bool | None = None


@dataclass
class BackboneCost(Record):
    """What deploying and training a backbone costs on this machine (pipeline/compute.backbone_cost)."""
    flops_per_item: float | None = None
    params: int | None = None
    weights_mb: float | None = None
    latency_ms: float | None = None
    latency_batch: int = 1
    threads: int | None = None
    train_step_peak_gib: float | None = None
    train_step_batch: int | None = None
    OPTIONAL = ("train_step_peak_gib", "train_step_batch")

    def key(self) -> tuple:
        """Cheapest first: fewest inference FLOPs per item, then lower latency, then fewer parameters."""
        return (self.flops_per_item or float("inf"), self.latency_ms or float("inf"), self.params or 0)


@dataclass
class Assessment(Failable):
    """pipeline/assess.assess: the failed form holds only `failed` (the run went on without it)."""
    backbone: str = ""
    modality: str = ""
    n_items: int = 0
    knn_scoring: str = "accuracy"
    train_per_class_median: float | None = None
    scores: Scores = field(default_factory=Scores)
    shift: dict = field(default_factory=dict)
    features_seconds: float = 0.0
    seconds: float = 0.0
    features_cached: bool = False
    verdict: Verdict = field(default_factory=Verdict)
    cost: BackboneCost | None = None          # `headstart assess`: what the backbone costs (pipeline/compute.py)
    check: Check | None = None                # in results.json: did the predictions hold?
    OPTIONAL = ("failed", "train_per_class_median", "cost", "check")


@dataclass
class LabelIssue(Record):
    """One train or validation item whose given label the out-of-fold probe disputes."""
    rank: int = 0
    item: str = ""
    split: str = ""
    given: str = ""
    suggested: str = ""
    p_given: float = 0.0                  # the out-of-fold probability of the given label (self-confidence)
    p_suggested: float = 0.0


@dataclass
class LabelIssues(Record):
    """pipeline/labels.check_labels: cleanlab's flags on the train+val labels (label_issues.csv holds them all)."""
    checked: int = 0
    flagged: int = 0
    probe_accuracy: float | None = None  # how often the out-of-fold probe agrees with the given labels
    rows: list[LabelIssue] = field(default_factory=list)      # the first ones, most suspect first
    file: str = ""                       # in the run folder
    method: str = ""
    skipped: str | None = None           # why no check ran (a class with too few train+val items)
    OPTIONAL = ("skipped",)


@dataclass
class LeakCounts(Record):
    leak: int = 0
    conflict: int = 0
    duplicate: int = 0
    similar: int = 0
    exact: int = 0
    normalised: int = 0
    near: int = 0


@dataclass
class LeakPair(Record):
    a: str = ""
    b: str = ""
    ia: int = 0
    ib: int = 0
    roles: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    kind: str = ""                            # leak | conflict | duplicate | similar
    match: str = ""                           # exact | normalised | near
    similarity: float = 1.0


@dataclass
class Leakage(Record):
    threshold: float = 0.0
    threshold_floor: float = 0.0
    counts: LeakCounts = field(default_factory=LeakCounts)
    pairs: list[LeakPair] = field(default_factory=list)      # the first `limit` pairs
    all_pairs: int = 0
    near_skipped: str | None = None
    removed_from_train: list[str] | None = None              # --dedupe
    OPTIONAL = ("near_skipped", "removed_from_train")
