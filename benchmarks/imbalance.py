"""Imbalanced variants of the shared sets (issue 25): does every arm still see the rare class?

    python benchmarks/imbalance.py                          # every variant
    python benchmarks/imbalance.py hym-193-14 --strategies classic,linear-probe,finetune
    python benchmarks/imbalance.py hym-balanced             # the same backbone on the balanced set, for reference
    python benchmarks/imbalance.py --keep /tmp/imb          # also keep each variant's results.json there

Each variant runs `headstart run` in a fresh process (the installed version: run it once on the old code and once on
the new one for a before/after table) and reads the unit result.json files and split.json directly, so the numbers
do not depend on the version's results.json: per arm, test accuracy, balanced accuracy, macro-F1 and the recall of
the rarest class; and which arm was deployed. Skips (exit 0) without ../shared/data.

Variants:
- hym-193-14: every ants image (train/ + val/ = 193) and 14 bees in one folder per class (carved split);
- hym-124-12, hym-124-6: the shared split (train/ + given val/ as test) with only 12 (10:1) or 6 (20:1) of the
  training bees kept;
- hym-balanced: the shared split as it is (the reference the done-when compares with);
- trec-longtail: TREC-6 training questions, 400/200/100/50/25/12 per class (33:1), the official test questions;
- fsdd-longtail: five spoken digits, 120/60/30/15/6 training clips (20:1), the official test clips of those digits;
- trec-full: all 5452 TREC training questions (14.5:1 between ENTY and ABBR), the official test questions.
"""
from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA  # noqa: E402
from trec import to_csv  # noqa: E402


def _hym(dst: Path, ants: int | None, bees: int, carved: bool) -> Path:
    src = DATA / "hymenoptera"
    for c, n in (("ants", ants), ("bees", bees)):
        train = sorted((src / "train" / c).iterdir())
        val = sorted((src / "val" / c).iterdir())
        if carved:                       # one folder per class: everything of ants, the first n bees
            files = (train + val)[: n or None]
            pairs = [(f, dst / c / f"{f.parent.parent.name}-{f.name}") for f in files]
        else:                            # train/ reduced, val/ (the test set) as given
            pairs = [(f, dst / "train" / c / f.name) for f in train[: n or None]]
            pairs += [(f, dst / "val" / c / f.name) for f in val]
        for f, out in pairs:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.symlink_to(f)
    return dst


def _trec(dst: Path, counts=(400, 200, 100, 50, 25, 12), seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    dst.mkdir(parents=True, exist_ok=True)
    to_csv(DATA / "trec" / "train_5500.label", dst / "all.csv")
    to_csv(DATA / "trec" / "TREC_10.label", dst / "test.csv")
    rows = list(csv.DictReader(open(dst / "all.csv")))
    rng.shuffle(rows)
    # the largest class first: the order of counts follows the classes' own frequency
    order = sorted({r["label"] for r in rows}, key=lambda c: -sum(r["label"] == c for r in rows))
    keep = [r for c, n in zip(order, counts) for r in [x for x in rows if x["label"] == c][:n]]
    with open(dst / "train.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows(keep)
    return [str(dst / "train.csv"), str(dst / "test.csv")]


def _fsdd(dst: Path, counts=(120, 60, 30, 15, 6), seed: int = 0) -> Path:
    rng = random.Random(seed)
    files = sorted((DATA / "fsdd" / "recordings").glob("*.wav"))
    rng.shuffle(files)
    want = {str(d): n for d, n in enumerate(counts)}
    for f in files:
        digit, _, idx = f.stem.split("_")
        if digit not in want:
            continue
        role = "test" if int(idx) <= 4 else "train"
        if role == "train":
            if want[digit] == 0:
                continue
            want[digit] -= 1
        out = dst / role / digit / f.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.symlink_to(f)
    return dst


VARIANTS = {
    "hym-193-14": lambda t: ["run", str(_hym(t, None, 14, carved=True))],
    "hym-124-12": lambda t: ["run", str(_hym(t, None, 12, carved=False))],
    "hym-124-6": lambda t: ["run", str(_hym(t, None, 6, carved=False))],
    "hym-balanced": lambda t: ["run", str(_hym(t, None, None, carved=False))],
    "trec-longtail": lambda t: (lambda d, test: ["run", d, "--test-file", test])(*_trec(t)),
    "fsdd-longtail": lambda t: ["run", str(_fsdd(t))],
    # the whole TREC-6 training set is itself 14.5:1 (ABBR 86 vs ENTY 1250): the decision metric changes there
    "trec-full": lambda t: (lambda d, test: ["run", d, "--test-file", test])(*_trec(t, counts=(10 ** 6,) * 6)),
}


def arm_numbers(run: Path, results: dict) -> dict:
    """Per arm (seed 0): test accuracy, balanced accuracy, macro-F1, rarest class's recall; from the unit files
    (and each arm's binary operating point where results.json records one)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
    split = json.loads((run / "split.json").read_text())
    classes = split["classes"]
    y = np.array([classes.index(c) for _, c in split["test"]])
    train = [classes.index(c) for _, c in split["train"]]
    rare = int(np.argmin(np.bincount(train, minlength=len(classes))))
    out = {}
    for r in sorted(run.glob("*/seed0/result.json")):
        res = json.loads(r.read_text())
        if res.get("failed") or not res.get("test_probs"):
            continue
        probs = np.asarray(res["test_probs"])
        pred = probs.argmax(1)
        ops = results["strategies"].get(r.parent.parent.name, {}).get("operating_point") or [{}]
        if ops[0].get("threshold") is not None:                    # a binary operating point, when recorded
            pos = classes.index(results["metric"]["positive_class"])
            pred = np.where(probs[:, pos] >= ops[0]["threshold"], pos, 1 - pos)
        out[r.parent.parent.name] = {
            "accuracy": float((pred == y).mean()), "balanced": float(balanced_accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
            "rare_recall": float(recall_score(y, pred, labels=[rare], average=None, zero_division=0)[0]),
            "rare": f"{classes[rare]} ({int((y == rare).sum())} test)"}
    return out


def main():
    args = sys.argv[1:]
    extra = args[args.index("--strategies"):args.index("--strategies") + 2] if "--strategies" in args else []
    only = [a for a in args if a in VARIANTS]
    keep = Path(args[args.index("--keep") + 1]) if "--keep" in args else None     # results.json per variant
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    checks = []
    if not (DATA / "hymenoptera").exists():
        print(f"skip: {DATA} not present")
        return
    print("| variant | arm | test accuracy | balanced accuracy | macro-F1 | rarest class recall | deployed | wall |")
    print("|---|---|---|---|---|---|---|---|")
    for name, make in VARIANTS.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as t:
            cmd = [sys.executable, "-m", "headstart", *make(Path(t) / "data"), "--out", str(Path(t) / "run"), *extra]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
            wall = time.perf_counter() - t0
            if p.returncode:
                print(f"| {name} | failed: {p.stderr.strip().splitlines()[-1:]} |")
                continue
            run = Path(t) / "run"
            results = json.loads((run / "results.json").read_text())
            for arm, m in arm_numbers(run, results).items():
                deployed = "yes" if results.get("recommended") == arm else ""
                flag = (results["strategies"][arm].get("collapse") or {}).get("collapsed")
                arm += " (collapsed)" if flag else ""
                print(f"| {name} | {arm} | {100 * m['accuracy']:.1f}% | {100 * m['balanced']:.1f}% | "
                      f"{m['macro_f1']:.3f} | {m['rare']}: {100 * m['rare_recall']:.0f}% | {deployed} | "
                      f"{wall:.0f} s |", flush=True)
            metric = results.get("metric") or {}
            if metric:
                print(f"|  | (decision metric: {metric.get('name')}; {metric.get('why', '')}) |||||||", flush=True)
            checks.append((name, (results.get("assessment") or {}).get("check")))
            if keep:
                (keep / f"{name}.json").write_text(json.dumps(results))
    print("\n| variant | vs scratch: predicted | measured | held? | vs classic: predicted | measured | held? |")
    print("|---|---|---|---|---|---|---|")
    held = {True: "yes", False: "NO", None: "—"}
    for name, c in checks:
        if not c:
            continue
        cells = []
        for key in ("vs_scratch", "vs_classic"):
            r = c["rows"][key]
            m = (f"{r['measured']}: {c['best_transfer']} − {r['baseline']} {100 * r['difference']:+.1f} "
                 f"[{100 * r['ci'][0]:+.1f}, {100 * r['ci'][1]:+.1f}]" if "difference" in r else r["measured"])
            cells += [r["predicted"], m, held[r["agrees"]]]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
