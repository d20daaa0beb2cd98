"""Is bf16 mixed precision safe to make the default? Same split, same seeds, float32 vs bf16-mixed training.

    python benchmarks/bf16_parity.py trec fsdd hymenoptera   # any subset; skips sets that are absent
    python benchmarks/bf16_parity.py trec --scratch-epochs 4 # extra arguments go to every `headstart run`

For each set, `headstart run --strategies finetune,scratch --full-scratch --no-assess` runs twice in fresh
processes (--precision 32-true, then bf16-mixed) with the same seed and split; prints each arm's test accuracy,
the paired difference bf16 - float32 on the same test items with its bootstrap 95% CI, and the training time of
each (the speed-up). Loss, optimizer state and master weights stay float32 in both (Fabric's bf16-mixed autocast).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA, run  # noqa: E402


def layout(name: str, tmp: Path) -> list[str] | None:
    """The `headstart run` data arguments for a shared set, or None when it is absent."""
    if name == "hymenoptera":
        return [str(DATA / "hymenoptera")] if (DATA / "hymenoptera").exists() else None
    if name.startswith("trec"):          # trec: all 5452 training questions; trec-N: every k-th, about N
        from trec import to_csv
        if not (DATA / "trec").exists():
            return None
        to_csv(DATA / "trec" / "train_5500.label", tmp / "train.csv")
        to_csv(DATA / "trec" / "TREC_10.label", tmp / "test.csv")
        if "-" in name:
            rows = (tmp / "train.csv").read_text().splitlines(keepends=True)
            step = max(1, (len(rows) - 1) // int(name.split("-")[1]))
            (tmp / "train.csv").write_text(rows[0] + "".join(rows[1::step]))
        return [str(tmp / "train.csv"), "--test-file", str(tmp / "test.csv")]
    if name == "fsdd":
        src = DATA / "fsdd" / "recordings"
        if not src.exists():
            return None
        for f in src.glob("*.wav"):
            digit, _, idx = f.stem.split("_")
            d = tmp / "fsdd" / ("test" if int(idx) <= 4 else "train") / digit
            d.mkdir(parents=True, exist_ok=True)
            (d / f.name).symlink_to(f)
        return [str(tmp / "fsdd")]
    raise SystemExit(f"unknown set {name}; choose hymenoptera, trec, trec-N, fsdd")


def each_set(names: list[str], make_args=layout):
    """(name, temporary folder, `headstart run` data arguments) for each set that is present; says which are not."""
    for name in names:
        with tempfile.TemporaryDirectory() as t:
            args = make_args(name, Path(t))
            if args is None:
                print(f"skip: {name} not present under {DATA}")
                continue
            yield name, Path(t), args


def main():
    from headstart.stats.evaluate import paired_difference
    from headstart.core.io import read_json
    first_opt = next((i for i, a in enumerate(sys.argv[1:]) if a.startswith("--")), len(sys.argv) - 1)
    names, extra = sys.argv[1:][:first_opt] or ["trec", "fsdd", "hymenoptera"], sys.argv[1:][first_opt:]
    print(f"{'set':<12}{'arm':<10}{'fp32 acc':>9}{'bf16 acc':>9}  {'bf16 - fp32 [95% CI]':<26}"
          f"{'fp32 s':>8}{'bf16 s':>8}{'speed-up':>9}  epochs fp32/bf16", flush=True)
    for name, tmp, args in each_set(names):
        res = {}
        for prec in ("32-true", "bf16-mixed"):
            out = tmp / prec
            _, _, res[prec] = run([*args, "--out", str(out), "--strategies", "finetune,scratch", "--full-scratch",
                                   "--no-assess", "--precision", prec, *extra], str(tmp / "cache"))
        split = read_json(tmp / "32-true" / "split.json")
        y = np.asarray([split["classes"].index(c) for _, c in split["test"]])
        for arm in ("finetune", "scratch"):
            p = {prec: [np.asarray(read_json(tmp / prec / arm / "seed0" / "result.json")["test_probs"])]
                 for prec in res}
            d = paired_difference(y, p["bf16-mixed"], p["32-true"])
            a, b = res["32-true"]["strategies"][arm], res["bf16-mixed"]["strategies"][arm]
            print(f"{name:<12}{arm:<10}{a['accuracy']:>9.3f}{b['accuracy']:>9.3f}  "
                  f"{100 * d['difference']:+5.1f} pts [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
                  f"{'':<5}{a['train_seconds']:>8.1f}{b['train_seconds']:>8.1f}"
                  f"{a['train_seconds'] / b['train_seconds']:>8.2f}x  {a['epochs_run']}/{b['epochs_run']}",
                  flush=True)


if __name__ == "__main__":
    main()
