"""`headstart suggest`: the ranked items to label next, as a CSV, and in the run's report ("Next steps").

    res = run_suggest("runs/x", ["unlabelled/"], n=50)      # writes runs/x/suggestions.csv (or out=...)
"""
from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

from headstart.app.run import publish
from headstart.core.io import atomic_write_bytes, read_json
from headstart.core.run_results import RunResults
from headstart.core.sections import Suggestions
from headstart.pipeline.suggest import COLUMNS, resolve_run_dir, suggest_items

# what the simulated annotation rounds found (benchmarks/README.md, "Which examples to label next"), said in the report
VALIDATED = ("in simulated annotation rounds on the shared sets this rule beat random picks by 2-5 points while labels "
             "were scarce (TREC, FSDD, hymenoptera), and did not beat random once the probe was near its plateau "
             "(hymenoptera from 20 labels on, TREC before its last round): benchmarks/README.md")


def run_suggest(run_dir: str, inputs: list[str], n: int = 50, kind: str = "margin", random_share: float = 0.2,
                seed: int = 0, out: str = "", progress=None, log=print) -> Suggestions:
    run_dir = str(resolve_run_dir(run_dir, log))
    res = suggest_items(run_dir, inputs, n, kind, random_share, seed, progress, log)
    path = Path(out) if out else Path(run_dir) / "suggestions.csv"
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(r.to_dict() for r in res.rows)
    # skipped items in the same file, after the ranking, without a rank: nothing disappears
    w.writerows({"item": s.path, "why": f"skipped: {s.reason}"} for s in res.skipped)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue().encode())
    res.file = str(path)
    results_file = Path(run_dir) / "results.json"
    if results_file.exists():           # the run finished: its report gets the list in "Next steps"
        results = RunResults.from_dict(read_json(
            results_file, fix="run the same `headstart run` command (same --out) to write it again, then suggest"))
        results.suggestions = dataclasses.replace(res, rows=res.rows[:20], validated=VALIDATED)
        publish(results, Path(run_dir))
    return res
