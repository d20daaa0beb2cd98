"""Predict with an exported model folder: the one loading path (models/factory.load_folder), then the modality's
own input handling (image files, text tables or strings, audio files), and the output formats.

    rows = predict("runs/x/model", ["img.jpg", "folder/"])   # [{"path", "label", "prob", "top"}] (+ "error")
    rows = predict("runs/x/model", ["-"], stdin=sys.stdin)     # one input per line: texts, or file paths
    write_rows(rows, "csv", sys.stdout)                        # also "jsonl"; "table" is the CLI's rich table
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from headstart.core.errors import UserError
from headstart.modalities import MODALITIES
from headstart.modalities.base import InputItem
from headstart.models.factory import load_folder

FORMATS = ("table", "jsonl", "csv")
CSV_COLUMNS = ["path", "label", "prob", "top", "error", "text", "p_positive", "threshold"]


def load_model(folder: str | Path):
    """(model in eval mode, spec, classes, meta)."""
    return load_folder(folder)


def with_stdin(inputs: list[str], stdin) -> list[str]:
    """`-` replaced by the non-empty lines of standard input (texts for a text model, else file paths); every
    input keeps its origin for the output ("arg 2", "stdin:3")."""
    if "-" not in inputs:
        return [InputItem(s, f"arg {i}") for i, s in enumerate(inputs, 1)]
    if stdin is None or stdin.isatty():
        raise UserError("input '-' reads standard input, but nothing is piped in; e.g. "
                        "cat questions.txt | headstart predict MODEL -")
    lines = [InputItem(line.rstrip("\r\n"), f"stdin:{n}", piped=True) for n, line in enumerate(stdin, 1)
             if line.strip()]
    out = [x for i, s in enumerate(inputs, 1) for x in (lines if s == "-" else [InputItem(s, f"arg {i}")])]
    if not out:
        raise UserError("standard input was empty: pipe one text or file path per line")
    return out


def predict(model_dir: str | Path, inputs: list[str], batch_size: int = 32, top: int = 3,
            runtime: str = "auto", stdin=None, options: dict | None = None) -> list[dict]:
    """options: how text models read tables ({"text_col": ..., "encoding": ...})."""
    model, spec, classes, meta = load_folder(model_dir)
    inputs = with_stdin(list(inputs), stdin)
    rows = MODALITIES[spec.modality]().predict(model_dir, model, spec, classes, inputs, max(top, len(classes))
                                               if meta.get("operating_point") else top, batch_size, runtime,
                                               options=options)
    return [apply_operating_point(r, meta.get("operating_point"), classes, top) for r in rows]


def apply_operating_point(row: dict, rule: dict | None, classes: list[str], top: int) -> dict:
    """A binary model exported with a threshold (chosen on validation for the run's decision metric): the label is
    the positive class iff its probability reaches the threshold; `prob` stays the probability of the label given,
    and `p_positive` says the positive class's own."""
    if not rule or "error" in row or len(classes) != 2:
        return row
    probs = dict((c, p) for c, p in row["top"])
    pos = rule["positive"]
    p_pos = probs[pos]
    label = pos if p_pos >= rule["threshold"] else next(c for c in classes if c != pos)
    return {**row, "label": label, "prob": probs[label], "top": row["top"][:top], "p_positive": p_pos,
            "threshold": rule["threshold"]}


def write_rows(rows: list[dict], fmt: str, out) -> None:
    """jsonl: one JSON object per line; csv: one row per input, top classes as `label:prob` joined by `;`."""
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r) + "\n")
        return
    w = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "prob": f"{r['prob']:.6f}" if "prob" in r else "",
                    "top": ";".join(f"{c}:{p:.6f}" for c, p in r.get("top", []))})
