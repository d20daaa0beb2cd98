"""The typed state of one run, shared by every unit: what was decided before training, plus per-run caches.

    ctx = build_context(cfg)          # pipeline/context.py fills it: config, backbone spec, data, split, modality
    ctx.cfg.epochs, ctx.ds.labels, ctx.split["train"], ctx.modality.dataset(ctx.inputs, idx)
    ctx.timings.features_seconds      # what the frozen feature pass cost, for the cost accounting

The layers below pipeline/ never see it: they take what they use (ctx.inputs for a modality, the split, the
config, a Fabric). A grid unit on a label fraction gets a copy with its own split, run folder and probe
(dataclasses.replace); the frozen features are shared.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from headstart.core.config import RunConfig
from headstart.core.dataset import LabeledSet
from headstart.modalities.base import Inputs, Modality, ModalityState
from headstart.models.registry import BackboneSpec
from headstart.stats.probe import Probe

if TYPE_CHECKING:                   # the annotation only: importing lightning here would slow every import
    from lightning.fabric import Fabric


@dataclass
class Timings:
    """What the shared frozen feature pass and probe fit cost (the units that use them account for them)."""
    features_seconds: float = 0.0       # wall time of features() in this process (load from cache or compute)
    features_cached: bool = False       # the features came from the disk cache
    features_compute: dict = field(default_factory=dict)   # seconds / cpu_seconds of the pass when it was computed
    features_dtype: str = "float32"
    probe_fit_seconds: float = 0.0
    inference_flops: float | None = None   # per item, of the deployed network's forward pass


class Stages:
    """Wall seconds per stage of a run, exclusive: a stage run inside another (the frozen pass inside the
    assessment) is counted as itself, not again in its parent.

        with ctx.stages("near duplicates"): ...
        ctx.stages.seconds       # {"read": 3.1, "frozen pass": 40.2, ...}
    """

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._stack: list[str] = []

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        self._stack.append(name)
        try:
            yield
        finally:
            self._stack.pop()
            took = time.perf_counter() - t0
            self.seconds[name] = self.seconds.get(name, 0.0) + took
            if self._stack:
                parent = self._stack[-1]
                self.seconds[parent] = self.seconds.get(parent, 0.0) - took

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.seconds.items()}


@dataclass(frozen=True)
class Decision:
    """What every choice of the run is scored on (stats/metrics.py), decided once from the training labels."""
    metric: str = "accuracy"             # accuracy | balanced_accuracy | macro_f1
    why: str = ""
    rebalance: str = "none"              # none | logit-adjust | class-weights: how every arm counters imbalance
    positive: int | None = None          # binary tasks: the rarer training class (precision/recall/threshold)
    ratio: float = 1.0                   # largest / smallest training class

    def to_dict(self, classes: list[str]) -> dict:
        return {"name": self.metric, "why": self.why, "rebalance": self.rebalance,
                "imbalance_ratio": round(self.ratio, 2),
                "positive_class": classes[self.positive] if self.positive is not None else None}


@dataclass
class RunContext:
    cfg: RunConfig
    spec: BackboneSpec
    size: int                            # input size (pixels; text: max tokens)
    ds: LabeledSet
    split: dict                          # {"train": [...], "val": [...], "test": [...], "roles": {...}}
    run_dir: Path
    fabric: Fabric
    cache_dir: Path
    modality: Modality
    state: ModalityState                 # per-item model inputs and facts from modality.prepare
    precision: str = "32-true"           # the run-wide Fabric's precision (a trained unit may use its own)
    progress: Any = None                 # a rich Progress, or None
    log: Callable[[str], None] = print
    features: np.ndarray | None = None   # frozen features of every item, once computed (shared by grid units)
    probe: Probe | None = None           # the probe fitted on this context's split
    timings: Timings = field(default_factory=Timings)
    decision: Decision = field(default_factory=lambda: Decision())   # the metric and class weighting of this run
    stages: Stages = field(default_factory=Stages)                   # wall seconds per stage (results.json)

    @property
    def inputs(self) -> Inputs:
        """What a modality reads: the items, their prepared inputs, the backbone spec, the input size, the config."""
        return Inputs(self.ds, self.state, self.spec, self.size, self.cfg, str(self.fabric.device))

    def note(self, msg: str) -> None:
        """A progress line for logs and pipes (one per phase or epoch); silent while a live progress bar shows it."""
        if self.progress is None or getattr(self.progress, "disable", False):
            self.log(msg)
