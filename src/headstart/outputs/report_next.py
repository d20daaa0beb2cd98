"""The report's "Next steps": what more labels would buy (the fitted learning curve), which items to label first
(`headstart suggest`), and what a larger backbone would buy (`headstart run --backbones`). No torch."""
from __future__ import annotations

import numpy as np

from headstart.outputs.common import pct as _pct
from headstart.stats.curve import fit_power_law

LARGER = {"efficientnet_lite0": "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2",
          "efficientnet_lite1": "efficientnet_lite1,efficientnet_lite2"}


def more_labels(results: dict) -> str:
    """Accuracy at twice the labels, from the power law fitted to the recommended arm's curve (an extrapolation,
    said as one), or how to measure it."""
    rec = results.get("recommended")
    c = results.get("curve") or {}
    pts = (c.get("points") or {}).get(rec) or {}
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


def label_first(results: dict) -> list[str]:
    s = results.get("suggestions")
    out = results["config"]["out"]
    if not s:
        return [f"**Which items to label first:** `headstart suggest {out} <folder or table of unlabelled items> "
                "--n 50` ranks them (uncertain to the model, or far from every labelled item, plus a random share)."]
    lines = [f"**Which items to label first** (`{s['file']}`, {len(s['rows'])} of {s['pool']} unlabelled items, by "
             f"{s['kind']} uncertainty x coverage, {100 * s['random_share']:.0f}% random; "
             f"{s['model']}){' — ' + s['validated'] if s.get('validated') else ''}:", ""]
    lines += [f"{r['rank']}. `{r['item']}`: {r['why']} (predicted {r['predicted']} {r['probability']:.2f}, "
              f"runner-up {r['runner_up']} {r['runner_up_probability']:.2f}"
              + (f"; the deployed {s['deployed']} model says {r['deployed_predicted']} {r['deployed_probability']:.2f}"
                 if r.get("deployed_predicted") else "") + ")" for r in s["rows"][:5]]
    return lines


def larger_backbone(results: dict) -> str:
    cmp = results.get("backbone_comparison")
    if cmp:
        return f"**A larger backbone:** {cmp['summary']}"
    b = results["config"].get("backbone", "")
    nxt = LARGER.get(b)
    data = results["config"]["data"]
    if nxt:
        return (f"**A larger backbone:** not measured; `headstart run {data} --backbones {nxt}` assesses each, trains "
                "the transfer arms of the most promising and the cheapest on this split, and weighs accuracy against "
                "cost (scratch and classic run once).")
    return (f"**A larger backbone:** not measured; `headstart run {data} --backbones {b},<another>` compares "
            "starting points on this split (any registry name, timm:/hf: id, or a headstart model/ folder).")


def next_steps_lines(results: dict) -> list[str]:
    return ["## Next steps", "", more_labels(results), "", *label_first(results), "", larger_backbone(results), ""]
