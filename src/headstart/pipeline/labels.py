"""Which labels to check again: the train and validation items whose given label the frozen-feature probe disputes
out of fold (stats/label_issues.py, cleanlab's find_label_issues), written to <run>/label_issues.csv and the report.

    issues = check_labels(ctx)        # core/findings.LabelIssues: how many checked and flagged, the first rows

It reuses the frozen features every run computes and the probe's C, so it costs a few probe fits (seconds). Test
items are never checked: the test split stays untouched by any choice, this one included.
"""
from __future__ import annotations

import csv
import io

import numpy as np

from headstart.core.findings import LabelIssue, LabelIssues
from headstart.core.io import atomic_write_bytes
from headstart.pipeline.frozen import features, probe
from headstart.pipeline.state import RunContext
from headstart.stats.label_issues import FOLDS, out_of_fold_probs, rank_issues, too_few

FILE = "label_issues.csv"
SHOWN = 20           # rows kept in results.json and the report (label_issues.csv has them all)
METHOD = (f"cleanlab find_label_issues (confident learning) on {FOLDS}-fold out-of-fold probabilities of the "
          "linear probe on frozen features (the run's C), train and validation items; ranked by the probability of "
          "the given label")


def check_labels(ctx: RunContext) -> LabelIssues:
    idx = ctx.split["train"] + ctx.split["val"]
    y = np.asarray(ctx.ds.labels)[idx]
    why = too_few(y, ctx.ds.classes)
    if why:
        ctx.log(f"label check skipped: {why}")
        return LabelIssues(checked=len(idx), method=METHOD, skipped=why)
    probs = out_of_fold_probs(features(ctx)[idx], y, probe(ctx).C)
    flagged = rank_issues(y, probs)
    role = {i: "train" for i in ctx.split["train"]} | {i: "val" for i in ctx.split["val"]}
    classes = ctx.ds.classes
    rows = [LabelIssue(rank=r, item=ctx.ds.paths[idx[j]], split=role[idx[j]], given=classes[y[j]],
                       suggested=classes[int(probs[j].argmax())], p_given=round(float(probs[j, y[j]]), 4),
                       p_suggested=round(float(probs[j].max()), 4)) for r, j in enumerate(flagged, 1)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(LabelIssue().to_dict()), lineterminator="\n")
    w.writeheader()
    w.writerows(r.to_dict() for r in rows)
    path = ctx.run_dir / FILE
    if ctx.fabric.is_global_zero:
        atomic_write_bytes(path, buf.getvalue().encode())
    agree = float(np.mean(probs.argmax(1) == y))
    ctx.log(f"label check: {len(rows)} of {len(idx)} train+val labels look wrong to the probe (which agrees with "
            f"{100 * agree:.0f}% of the labels out of fold); listed in {path}")
    return LabelIssues(checked=len(idx), flagged=len(rows), probe_accuracy=round(agree, 4), rows=rows[:SHOWN],
                       file=FILE, method=METHOD)
