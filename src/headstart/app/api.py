"""The Python API: the same experiment as `headstart run`, called from a script or a notebook, with typed results.

    import headstart
    res = headstart.run("data/xray", out="runs/xray", seeds=3)          # any RunConfig field as a keyword
    res = headstart.run(df, text_col="review", label_col="stars")        # a pandas DataFrame works too
    res.recommended, res.arms["linear-probe"].accuracy, res.arms["scratch"].bounded
    d = res.difference("linear-probe", "scratch")  # d.points +31.4, d.points_ci (22.9, 39.9), d.beyond_noise True
    rows = headstart.predict(res.model_dir, ["img.jpg"])
    cmp = headstart.compare("data/xray", ["efficientnet_lite0", "efficientnet_lite2"])   # which backbone
    picks = headstart.suggest(res.run_dir, ["data/unlabelled"], n=50)                     # which items to label

A DataFrame is written once to the cache (content-addressed CSV), and config.json points at that file, so the run
stays reproducible and resumable like any other. `res` is results.json as a typed record (`res.raw`: its JSON).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from headstart.app.compare import run_compare
from headstart.app.run import run_experiment
from headstart.app.suggest import run_suggest
from headstart.core.comparison import Comparison
from headstart.core.config import RunConfig
from headstart.core.io import default_cache_dir, write_text
from headstart.core.records import Difference
from headstart.core.run_results import ArmSummary, RunResults
from headstart.outputs.predict import predict as _predict
from headstart.outputs.report import recommendation


Arm = ArmSummary             # one strategy's test numbers (means over seeds) and how it trained
__all__ = ["Arm", "Difference", "Results", "compare", "predict", "run", "suggest"]   # Difference: a minus b on the
#                                                   same test items (.points, .points_ci, .beyond_noise)


@dataclass
class Results(RunResults):
    """results.json as a record (core/run_results.RunResults), plus the verdict in words."""

    def verdict(self) -> str:
        """The report's recommendation paragraph, as plain text."""
        return recommendation(self).replace("**", "").replace("`", "")

    @classmethod
    def of_run(cls, res: RunResults) -> "Results":
        return cls(**{f.name: getattr(res, f.name) for f in dataclasses.fields(res)})


def run(data, out: str = "", log=print, **options) -> Results:
    """Run (or resume) the controlled experiment on `data`: a folder, a table file, or a pandas DataFrame (text or
    file-path column plus a label column). Keywords are RunConfig fields (seeds=3, strategies=[...], curve=[...])."""
    cfg = RunConfig(data=_as_path(data, options.get("cache_dir", "")), out=out, **options)
    return Results.of_run(run_experiment(cfg, log=log or (lambda *a: None)))


def compare(data, backbones: list[str], top_k: int = 2, out: str = "", log=print, **options) -> Comparison:
    """`headstart run --backbones`: assess every backbone, train the top_k by the assessment and the cheapest on one
    split, and recommend one (comparison.json as a record: rows, agreement, recommendation, summary)."""
    cfg = RunConfig(data=_as_path(data, options.get("cache_dir", "")), out=out, **options)
    return run_compare(cfg, list(backbones), top_k, log=log or (lambda *a: None))


def suggest(run_dir, unlabelled: list[str], n: int = 50, random_share: float = 0.2, kind: str = "margin",
            log=print) -> list[dict]:
    """`headstart suggest`: the unlabelled items to label first, [{"rank", "item", "score", "why", "predicted", ...}];
    also written to <run_dir>/suggestions.csv and the run's report."""
    return [r.to_dict() for r in run_suggest(str(run_dir), [str(x) for x in unlabelled], n, kind, random_share,
                                             log=log or (lambda *a: None)).rows]


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
