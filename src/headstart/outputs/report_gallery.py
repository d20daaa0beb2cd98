"""The report's error-gallery section, from results.gallery (outputs/gallery.make_gallery). No torch."""
from __future__ import annotations

from headstart.core.run_results import RunResults
from headstart.core.sections import GalleryItem
from headstart.outputs.common import table


def _cell(it: GalleryItem) -> str:
    if it.picture:
        return f"![{it.item}]({it.picture})"
    return (it.text or "")[:160] or f"`{it.item}`"


def gallery_lines(results: RunResults) -> list[str]:
    g = RunResults.of(results).gallery
    if g is None:
        return []
    lines = ["## What the deployed model gets wrong (test)", ""]
    if not g.wrong:
        return lines + [f"`{g.arm}` (seed {g.seed}) got all {g.n_test} test items right.", ""]
    lines += [f"`{g.arm}` (seed {g.seed}, the exported model) is wrong on {g.wrong} of {g.n_test} test items. Its most "
              "confident mistakes first (every item, arm and seed is in `predictions.csv`):", "",
              table(["", "item", "true", "predicted (probability)"],
                    [[_cell(it), f"`{it.item}`", it.true, f"{it.predicted} ({it.probability:.2f})"]
                     for it in g.mistakes]), ""]
    if g.confused:
        lines += ["Most confused: " + "; ".join(f"{c['true']} read as {c['predicted']} ({c['items']})"
                                                 for c in g.confused) + ".", ""]
    if g.versus:
        lines += [f"**`{g.arm}` vs `{g.versus}`** (seed 0, the same test items): {g.only_mine} right only by "
                  f"`{g.arm}`, {g.only_theirs} right only by `{g.versus}`; the paired difference above is made of "
                  f"these {g.only_mine + g.only_theirs} items."]
        if g.disagreements:
            lines += ["", table(["item", "true", f"`{g.arm}` says", f"`{g.versus}` says"],
                                [[_cell(it), it.true, f"{it.predicted} ({it.probability:.2f})",
                                  f"{it.other} ({it.other_probability:.2f})"] for it in g.disagreements])]
        lines.append("")
    return lines

