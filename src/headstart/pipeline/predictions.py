"""What every arm said of every validation and test item: per-unit predictions.csv files, and the run's
predictions.csv that stacks them (one row per strategy, seed, split and item).

    write_predictions(ctx, "finetune", unit, op)     # <run>/finetune/seed0/predictions.csv (atomic)
    rows = RunResults.from_dict(...).predictions_rows()   # [{"strategy", "seed", "split", "item", "true", ...}]

A row: the item (its path, `table.csv:12` for a table row; text runs add the text itself), its true and predicted
class, whether they agree, and the probability of every class (`p_<class>`). The predicted class follows the unit's
decision rule (argmax, or a binary task's operating threshold), so the deployed seed's test rows say what
`headstart predict` says of those items. Written from the unit's result.json (its probabilities), so they are always
the unit's; units from older versions get theirs when the run is summarised again.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from headstart.core.io import atomic_write_bytes
from headstart.core.results import UnitResult, unit_dir
from headstart.pipeline.state import RunContext
from headstart.stats.metrics import predict

FILE = "predictions.csv"


def columns(classes: list[str], text: bool) -> list[str]:
    return (["strategy", "seed", "split", "item"] + ["text"] * text + ["true", "predicted", "correct"]
            + [f"p_{c}" for c in classes])


def has_text(ctx: RunContext) -> bool:
    """Text runs add each item's text to its rows."""
    return bool(ctx.ds.items) and isinstance(ctx.ds.items[0], str)


def unit_rows(ctx: RunContext, strategy: str, r: UnitResult, threshold: float | None) -> list[dict]:
    """The unit's rows: validation then test items, in split order."""
    ds, rows = ctx.ds, []
    text = has_text(ctx)
    for split, probs in (("val", r.val_probs), ("test", r.test_probs)):
        idx = ctx.split[split]
        if len(probs) != len(idx):          # a unit from before validation probabilities were kept
            continue
        p = np.asarray(probs, dtype=np.float64)
        pred = predict(p, threshold, ctx.decision.positive)
        for i, k, row in zip(idx, pred, p):
            y = ds.labels[i]
            rows.append({"strategy": strategy, "seed": r.seed, "split": split, "item": ds.paths[i],
                         **({"text": ds.items[i]} if text else {}), "true": ds.classes[y],
                         "predicted": ds.classes[int(k)], "correct": int(int(k) == y),
                         **{f"p_{c}": round(float(v), 6) for c, v in zip(ds.classes, row)}})
    return rows


def _csv(rows: list[dict], cols: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def write_predictions(ctx: RunContext, units: dict[str, list[tuple[UnitResult, float | None]]]) -> Path:
    """Each unit's predictions.csv and the run's (every strategy and seed); returns the run's file."""
    cols = columns(ctx.ds.classes, has_text(ctx))
    everything = []
    for s, runs in units.items():
        for r, threshold in runs:
            rows = unit_rows(ctx, s, r, threshold)
            atomic_write_bytes(unit_dir(ctx.run_dir, s, r.seed) / FILE, _csv(rows, cols))
            everything += rows
    path = ctx.run_dir / FILE
    atomic_write_bytes(path, _csv(everything, cols))
    return path
