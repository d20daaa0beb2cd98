"""Does the label check find wrong labels (issue 29)? Flip a known share of the train+val labels of each shared set,
run the check `headstart run` runs (pipeline/labels.py: out-of-fold probabilities of the frozen-feature probe ->
cleanlab's find_label_issues), and count how many flagged items were flipped (precision) and how many flipped items
were flagged (recall), against flagging the same number of items at random.

    python benchmarks/label_issues.py                  # hymenoptera, TREC (2000 training questions), FSDD
    python benchmarks/label_issues.py hymenoptera --rates 0.05 --seeds 3

Each flip moves an item to another class drawn uniformly. The probe's C is chosen again on the noisy labels (what a
user's run would do). Intervals: Wilson 95% over the items pooled across seeds. Skips (exit 0) without
../shared/data. Frozen features come from the feature cache (computed once per set).
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fsdd import official_split  # noqa: E402
from hymenoptera import DATA  # noqa: E402
from trec import per_class, to_csv  # noqa: E402


def _trec(dst: Path, n: int = 2000) -> Path:
    """TREC-6: a stratified-ish random 2000 of the training questions (the check runs on train+val)."""
    full = dst / "full.csv"
    to_csv(DATA / "trec" / "train_5500.label", full)
    with open(full, newline="") as f:
        rows = list(csv.DictReader(f))
    rows = per_class(rows, n // 6, random.Random(0))
    out = dst / "trec.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return out


SETS = {"hymenoptera": lambda tmp: DATA / "hymenoptera", "trec": _trec,
        "fsdd": lambda tmp: official_split(tmp / "fsdd")}


def wilson(k: int, n: int) -> tuple[float, float]:
    from headstart.stats.evaluate import wilson_ci
    return tuple(wilson_ci(k, n))


def measure(name: str, rates: list[float], seeds: int) -> list[dict]:
    from headstart.core.config import RunConfig
    from headstart.pipeline.context import build_context
    from headstart.pipeline.frozen import features
    from headstart.stats.label_issues import out_of_fold_probs, rank_issues
    from headstart.stats.probe import fit_probe
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = SETS[name](Path(tmp))
        ctx = build_context(RunConfig(data=str(data), out=str(Path(tmp) / "run")), log=lambda *a: None)
        t0 = time.perf_counter()
        feats = features(ctx)
        idx = np.asarray(ctx.split["train"] + ctx.split["val"])
        x, clean, k = feats[idx], np.asarray(ctx.ds.labels)[idx], len(ctx.ds.classes)
        print(f"{name}: {len(idx)} train+val items, {k} classes, features in {time.perf_counter() - t0:.0f} s",
              flush=True)
        local = {"train": list(range(len(ctx.split["train"]))),
                 "val": list(range(len(ctx.split["train"]), len(idx)))}
        for rate in rates:
            tp = flagged = flipped = rand_tp = 0
            secs = 0.0
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                flip = rng.choice(len(idx), int(round(rate * len(idx))), replace=False)
                noisy = clean.copy()
                noisy[flip] = (noisy[flip] + rng.integers(1, k, len(flip))) % k       # another class, uniformly
                t1 = time.perf_counter()
                C = fit_probe(x, noisy, local, ctx.cfg.probe_cs, k).C
                found = set(rank_issues(noisy, out_of_fold_probs(x, noisy, C, seed=seed)))
                secs += time.perf_counter() - t1
                truth = set(flip.tolist())
                tp, flagged, flipped = tp + len(found & truth), flagged + len(found), flipped + len(truth)
                rand = set(rng.choice(len(idx), len(found), replace=False).tolist())
                rand_tp += len(rand & truth)
            rows.append({"set": name, "rate": rate, "items": len(idx), "flipped": flipped, "flagged": flagged,
                         "precision": tp / max(flagged, 1), "precision_ci": wilson(tp, flagged),
                         "recall": tp / max(flipped, 1), "recall_ci": wilson(tp, flipped),
                         "random_precision": rand_tp / max(flagged, 1), "random_ci": wilson(rand_tp, flagged),
                         "seconds": secs / seeds})
            r = rows[-1]
            print(f"  {100 * rate:.0f}% flipped ({flipped} over {seeds} seeds): flagged {flagged}, precision "
                  f"{100 * r['precision']:.1f}% [{100 * r['precision_ci'][0]:.1f}, {100 * r['precision_ci'][1]:.1f}]"
                  f", recall {100 * r['recall']:.1f}% [{100 * r['recall_ci'][0]:.1f}, {100 * r['recall_ci'][1]:.1f}]"
                  f"; random picks: precision {100 * r['random_precision']:.1f}% "
                  f"[{100 * r['random_ci'][0]:.1f}, {100 * r['random_ci'][1]:.1f}]; {r['seconds']:.1f} s per check",
                  flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sets", nargs="*", default=list(SETS))
    ap.add_argument("--rates", default="0.05,0.10")
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    if not DATA.exists():
        print(f"skip: {DATA} not present")
        return
    for name in a.sets:
        measure(name, [float(r) for r in a.rates.split(",")], a.seeds)


if __name__ == "__main__":
    main()
