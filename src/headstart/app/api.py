"""The Python API: the same experiment as `headstart run`, called from a script or a notebook, with typed results.

    import headstart
    res = headstart.run("data/xray", out="runs/xray", seeds=3)          # any RunConfig field as a keyword
    res = headstart.run(df, text_col="review", label_col="stars")        # a pandas DataFrame works too
    res.recommended, res.arms["linear-probe"].accuracy, res.arms["scratch"].bounded
    res.difference("linear-probe", "scratch")      # Difference(points=+31.4, ci=(22.9, 39.9), beyond_noise=True)
    rows = headstart.predict(res.model_dir, ["img.jpg"])
    cmp = headstart.compare("data/xray", ["efficientnet_lite0", "efficientnet_lite2"])   # which backbone
    picks = headstart.suggest(res.run_dir, ["data/unlabelled"], n=50)                     # which items to label

A DataFrame is written once to the cache (content-addressed CSV), and config.json points at that file, so the run
stays reproducible and resumable like any other. `results.json` stays the full record (`res.raw`).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from headstart.app.compare import run_compare
from headstart.app.run import run_experiment
from headstart.app.suggest import run_suggest
from headstart.core.config import RunConfig
from headstart.core.io import write_text
from headstart.outputs.common import bounded
from headstart.outputs.predict import predict as _predict
from headstart.outputs.report import recommendation
from headstart.pipeline.context import default_cache_dir


@dataclass(frozen=True)
class Arm:
    """One strategy's test numbers (means over seeds) and how it trained."""
    name: str
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    macro_f1: float | None
    val_acc: float | None
    train_seconds: float | None
    epochs_run: list[int] = field(default_factory=list)
    bounded: bool = False              # scratch stopped by racing: its numbers are bounds, not final values
    failed: str | None = None


@dataclass(frozen=True)
class Difference:
    """Accuracy of a minus accuracy of b on the same test items, in points, with the paired 95% CI."""
    points: float
    ci: tuple[float, float]
    beyond_noise: bool


@dataclass(frozen=True)
class Results:
    run_dir: Path
    recommended: str                   # the deployable arm chosen on validation (never on test)
    arms: dict[str, Arm]
    differences: dict[str, Difference]  # "linear-probe - scratch" -> Difference
    raw: dict                          # results.json as a dict: every number, with its provenance

    @property
    def model_dir(self) -> Path | None:
        m = self.raw.get("model")
        return Path(m["path"]) if m else None

    @property
    def report(self) -> Path:
        return self.run_dir / "report.md"

    def difference(self, a: str, b: str) -> Difference:
        return self.differences[f"{a} - {b}"]

    def verdict(self) -> str:
        """The report's recommendation paragraph, as plain text."""
        return recommendation(self.raw).replace("**", "").replace("`", "")

    @classmethod
    def from_dict(cls, res: dict) -> "Results":
        arms = {}
        for s, m in res["strategies"].items():
            if "failed" in m:
                arms[s] = Arm(s, None, None, None, None, None, failed=m["failed"])
                continue
            arms[s] = Arm(s, m["accuracy"], tuple(m["accuracy_ci"]), m["macro_f1"], m["val_acc"], m["train_seconds"],
                          list(m["epochs_run"]), bounded(m))
        diffs = {k: Difference(100 * d["difference"], (100 * d["ci"][0], 100 * d["ci"][1]), d["significant"])
                 for k, d in res.get("paired_differences", {}).items()}
        return cls(Path(res["config"]["out"]), res["recommended"], arms, diffs, res)


def run(data, out: str = "", log=print, **options) -> Results:
    """Run (or resume) the controlled experiment on `data`: a folder, a table file, or a pandas DataFrame (text or
    file-path column plus a label column). Keywords are RunConfig fields (seeds=3, strategies=[...], curve=[...])."""
    cfg = RunConfig(data=_as_path(data, options.get("cache_dir", "")), out=out, **options)
    return Results.from_dict(run_experiment(cfg, log=log or (lambda *a: None)))


def compare(data, backbones: list[str], top_k: int = 2, out: str = "", log=print, **options) -> dict:
    """`headstart run --backbones`: assess every backbone, train the top_k by the assessment and the cheapest on one
    split, and recommend one (comparison.json as a dict: rows, agreement, recommendation, summary)."""
    cfg = RunConfig(data=_as_path(data, options.get("cache_dir", "")), out=out, **options)
    return run_compare(cfg, list(backbones), top_k, log=log or (lambda *a: None))


def suggest(run_dir, unlabelled: list[str], n: int = 50, random_share: float = 0.2, kind: str = "margin",
            log=print) -> list[dict]:
    """`headstart suggest`: the unlabelled items to label first, [{"rank", "item", "score", "why", "predicted", ...}];
    also written to <run_dir>/suggestions.csv and the run's report."""
    return run_suggest(str(run_dir), [str(x) for x in unlabelled], n, kind, random_share,
                       log=log or (lambda *a: None))["rows"]


def predict(model_dir, inputs: list[str], top: int = 3) -> list[dict]:
    """Predictions of an exported model/ folder: [{"path", "label", "prob", "top"}] (+ "error" for a bad input)."""
    return _predict(model_dir, [str(x) for x in inputs], top=top)


def _as_path(data, cache_dir: str = "") -> str:
    """A DataFrame becomes a CSV in the cache named by its content hash (the same frame, the same file)."""
    if not hasattr(data, "to_csv"):
        return str(data)
    buf = io.StringIO()
    data.to_csv(buf, index=False)
    text = buf.getvalue()
    path = (Path(cache_dir) if cache_dir else default_cache_dir()) / "frames" / (
        hashlib.sha1(text.encode()).hexdigest()[:16] + ".csv")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return str(path)
