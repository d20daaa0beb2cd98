"""The sections a run's results gain besides its arms, as typed records (core/records.Record): the learning curve
and what transfer saves, the exported model, `headstart suggest`'s ranking, the error gallery, and the pointer to a
backbone comparison. core/run_results.RunResults holds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from headstart.core.records import Record, Skipped


@dataclass
class Fit(Record):
    """error = a * labels^-b (stats/curve.fit_power_law)."""
    a: float = 0.0
    b: float = 0.0


@dataclass
class Needed(Record):
    """Labels an arm needs to reach the curve's target (stats/curve.labels_needed)."""
    labels: float | None = None
    ci: list | None = None
    reached: bool = False
    boot_reached_share: float = 0.0
    fit: Fit | None = None
    at_most: bool = False
    n_max: int = 0


@dataclass
class Saved(Record):
    """Labels a transfer arm saves against scratch (stats/curve.labels_saved), and what they cost."""
    saved: float | None = None
    ci: list | None = None
    at_least: float | None = None
    note: str | None = None
    money: list | None = None
    OPTIONAL = ("at_least", "note")


@dataclass
class Curve(Record):
    fractions: list = field(default_factory=list)
    target: float | None = None
    metric: str = "accuracy"
    target_source: str = ""
    points: dict[str, dict[str, list[float]]] = field(default_factory=dict)   # arm -> labels -> score per seed
    cost_per_label: list = field(default_factory=list)
    val_items: int = 0
    needed: dict[str, Needed] = field(default_factory=dict)
    saved: dict[str, Saved] = field(default_factory=dict)     # "finetune vs scratch" -> Saved
    bounded: list[dict] = field(default_factory=list)         # racing-stopped units: their points are bounds


@dataclass
class ExportedModel(Record):
    path: str = ""
    strategy: str = ""
    seed: int = 0
    operating_point: dict | None = None
    onnx_skipped: str | None = None
    OPTIONAL = ("operating_point", "onnx_skipped")


@dataclass
class SuggestionRow(Record):
    """One item to label next (pipeline/suggest.py; a row of suggestions.csv)."""
    rank: int = 0
    item: str = ""
    score: float = 0.0
    why: str = ""
    predicted: str = ""
    probability: float = 0.0
    runner_up: str = ""
    runner_up_probability: float = 0.0
    uncertainty: float = 0.0
    gap: float = 0.0
    deployed_predicted: str | None = None        # what the run's exported model says, when it is not the probe
    deployed_probability: float | None = None
    OPTIONAL = ("deployed_predicted", "deployed_probability")


@dataclass
class Suggestions(Record):
    """`headstart suggest`: the ranking (in results.json, its first rows; the full list is in the CSV)."""
    rows: list[SuggestionRow] = field(default_factory=list)
    pool: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    labelled: int = 0
    kind: str = "margin"
    random_share: float = 0.0
    seed: int = 0
    inputs: list[str] = field(default_factory=list)
    model: str = ""
    deployed: str | None = None
    file: str = ""
    validated: str | None = None
    OPTIONAL = ("validated",)


@dataclass
class BackboneComparisonRef(Record):
    summary: str = ""
    report: str = ""


@dataclass
class Prediction(Record):
    """One row of predictions.csv: what one arm's seed said of one validation or test item."""
    strategy: str = ""
    seed: int = 0
    split: str = ""
    item: str = ""
    text: str | None = None
    true: str = ""
    predicted: str = ""
    correct: int = 0
    probs: dict[str, float] = field(default_factory=dict)     # the p_<class> columns

    @classmethod
    def from_row(cls, row: dict) -> "Prediction":
        return cls(strategy=row["strategy"], seed=row["seed"], split=row["split"], item=row["item"],
                   text=row.get("text"), true=row["true"], predicted=row["predicted"], correct=row["correct"],
                   probs={k[2:]: v for k, v in row.items() if k.startswith("p_")})

    @property
    def confidence(self) -> float:
        """The probability of the predicted class."""
        return self.probs.get(self.predicted, 0.0)


@dataclass
class GalleryItem(Record):
    item: str = ""
    text: str | None = None               # text runs: the text itself
    true: str = ""
    predicted: str = ""
    probability: float = 0.0
    picture: str | None = None            # plots/gallery-<k>.png: a thumbnail (images) or a spectrogram (audio)
    other: str | None = None              # disagreements: what the other arm said
    other_probability: float | None = None
    OPTIONAL = ("text", "picture", "other", "other_probability")


@dataclass
class Gallery(Record):
    """outputs/gallery.make_gallery: the exported model's most confident test mistakes, its most confused class
    pairs, and the test items where it and scratch (or, when scratch is deployed, the best transfer arm) disagree."""
    arm: str = ""
    seed: int = 0
    n_test: int = 0
    wrong: int = 0
    mistakes: list[GalleryItem] = field(default_factory=list)
    confused: list[dict] = field(default_factory=list)
    versus: str | None = None
    only_mine: int = 0
    only_theirs: int = 0
    disagreements: list[GalleryItem] = field(default_factory=list)


@dataclass
class GridCost(Record):
    """How this invocation's units were spread (pipeline/grid.py): the executor, units per node, and the grid's
    wall time against the sum of its units' wall times (their ratio is the speed-up the spread bought)."""
    executor: str = "local"                    # local | processes | ray
    units: int = 0                             # units trained in this invocation
    wall_seconds: float = 0.0                  # the grid, first unit started to last finished
    unit_seconds: float = 0.0                  # the units' own wall times, summed
    nodes: dict[str, int] = field(default_factory=dict)     # node (host) -> units it ran
    retried: int = 0                           # units a dead worker left unfinished, run again

    @property
    def speedup(self) -> float:
        return self.unit_seconds / self.wall_seconds if self.wall_seconds else 0.0
