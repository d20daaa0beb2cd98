"""The report's "Labels to check" section: the train and validation items whose given label the out-of-fold probe
disputes (pipeline/labels.py), most suspect first. No torch."""
from __future__ import annotations

from headstart.core.run_results import RunResults
from headstart.outputs.common import table

SHOWN = 10
WEAK = 0.9            # below this out-of-fold agreement the flags mix hard items with wrong labels: said


def label_lines(results: RunResults) -> list[str]:
    results = RunResults.of(results)
    li = results.label_issues
    if li is None:
        return []
    head = ["## Labels to check", ""]
    if li.skipped:
        return head + [f"Not checked: {li.skipped}.", ""]
    if not li.flagged:
        return head + [f"None of the {li.checked} train and validation labels look wrong to the probe ({li.method}).",
                       ""]
    lines = head + [f"**{li.flagged} of the {li.checked} train and validation labels look wrong** to the probe "
                    f"({100 * li.flagged / li.checked:.1f}%; {li.method}). Check these first: a fixed label helps "
                    f"every arm, and the list is `{li.file}` in the run folder. On the shared sets with 5-10% of labels flipped on "
                    "purpose, flagged items were flips 5 to 30 times as often as random picks and about 80-90% of "
                    "the flips were flagged (benchmarks/README.md, \"Labels to check\").", "",
                    table(["rank", "item", "split", "given label", "the probe says", "p(given)"],
                          [[r.rank, f"`{r.item}`", r.split, r.given, f"{r.suggested} ({r.p_suggested:.2f})",
                            f"{r.p_given:.2f}"] for r in li.rows[:SHOWN]]), ""]
    if li.probe_accuracy is not None and li.probe_accuracy < WEAK:
        lines += [f"The probe agrees with only {100 * li.probe_accuracy:.0f}% of the given labels out of fold: where "
                  "the frozen features separate the classes poorly, many flagged items are hard or unusual rather "
                  "than mislabelled (on TREC, ~80% agreement, 30-45% of the flags were planted errors). "
                  "Read the list as where to look first.", ""]
    if li.flagged > SHOWN:
        lines += [f"… {li.flagged - SHOWN} more in `{li.file}`.", ""]
    return lines
