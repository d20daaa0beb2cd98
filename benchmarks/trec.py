"""Benchmark the text workflow on TREC-6 (../shared/data/trec: 5452 train questions, official 500 test).

    python benchmarks/trec.py [--scratch]     # classic, linear-probe, finetune (+ scratch: slow on CPU)

Each arm runs alone in a fresh `headstart run` process (cold cache); prints wall time, peak memory, accuracy.
Skips (exit 0) when the data is absent.
"""
from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA, run  # noqa: E402  (same process runner)


def to_csv(src: Path, dst: Path) -> None:
    with open(dst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for line in src.read_text(encoding="latin-1").splitlines():   # one byte is not UTF-8
            label, question = line.split(" ", 1)
            w.writerow([question, label.split(":")[0]])


def per_class(rows: list[dict], k: int, rng) -> list[dict]:
    """The first k rows of each label after shuffling with rng (a random.Random): a stratified subset."""
    rows = list(rows)
    rng.shuffle(rows)
    seen, keep = {}, []
    for r in rows:
        if seen.get(r["label"], 0) < k:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            keep.append(r)
    return keep


def main():
    root = DATA / "trec"
    if not root.exists():
        print(f"skip: {root} not present")
        return
    arms = ["classic", "linear-probe", "finetune"] + (["scratch"] if "--scratch" in sys.argv else [])
    print(f"{'arm':<16}{'wall s':>8}{'train s':>9}{'peak GiB':>10}{'test acc':>10}  95% CI  trainable params")
    with tempfile.TemporaryDirectory() as tmp:
        to_csv(root / "train_5500.label", Path(tmp) / "train.csv")
        to_csv(root / "TREC_10.label", Path(tmp) / "test.csv")
        for s in arms:
            wall, peak, res = run([f"{tmp}/train.csv", "--test-file", f"{tmp}/test.csv", "--out", f"{tmp}/{s}",
                                   "--strategies", s], f"{tmp}/cache-{s}")
            m = res["strategies"][s]
            print(f"{s:<16}{wall:>8.1f}{m['train_seconds']:>9.1f}{peak:>10.2f}{m['accuracy']:>10.3f}  "
                  f"[{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}]  {m['trainable_params']}"
                  + (f"  epochs {m['epochs_run']} of {m['epoch_budget']}" if m["epoch_budget"] else ""))


if __name__ == "__main__":
    main()
