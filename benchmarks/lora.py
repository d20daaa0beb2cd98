"""LoRA against whole-network fine-tuning and the linear probe (issue 30), one arm per fresh process (so the peak
memory is the arm's own), the same split and seed:

    python benchmarks/lora.py                    # hymenoptera (Lite0), TREC (every 3rd question, MiniLM-L6),
                                                 # FSDD (every 3rd training clip, Whisper tiny.en)
    python benchmarks/lora.py trec --rank 16

Per arm: test accuracy with its 95% CI, trained parameters (share of the network), the adapter's size on disk,
the process's peak memory, training seconds and seconds per epoch. Skips (exit 0) without ../shared/data.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fsdd import official_split  # noqa: E402
from hymenoptera import DATA, run  # noqa: E402
from trec import to_csv  # noqa: E402


def _every(src: Path, dst: Path, k: int) -> Path:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows(rows[::k])
    return dst


def _sets(tmp: Path) -> dict[str, list[str]]:
    to_csv(DATA / "trec" / "train_5500.label", tmp / "trec-train.csv")
    to_csv(DATA / "trec" / "TREC_10.label", tmp / "trec-test.csv")
    fsdd = official_split(tmp / "fsdd")
    for i, f in enumerate(sorted((fsdd / "train").rglob("*.wav"))):
        if i % 3:
            f.unlink()                      # every 3rd training clip (900); the 300 official test clips stay
    return {"hymenoptera": [str(DATA / "hymenoptera")],
            "trec": [str(_every(tmp / "trec-train.csv", tmp / "trec-third.csv", 3)), "--test-file",
                     str(tmp / "trec-test.csv")],
            "fsdd": [str(fsdd)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sets", nargs="*", default=["hymenoptera", "trec", "fsdd"])
    ap.add_argument("--arms", default="linear-probe,finetune,lora")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--together", action="store_true", help="one run per set with every arm, then predict with its "
                    "exported model (the issue's end-to-end check)")
    a = ap.parse_args()
    if not DATA.exists():
        print(f"skip: {DATA} not present")
        return
    print(f"{'set':<12}{'arm':<14}{'test acc':>9}  {'95% CI':<16}{'trained':>12}{'share':>8}{'adapter MB':>11}"
          f"{'peak GiB':>9}{'train s':>9}{'s/epoch':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = _sets(tmp)
        (tmp / "cfg.json").write_text(json.dumps({"lora_rank": a.rank}))
        if a.together:
            for name in a.sets:
                together(name, sets[name], a.arms, tmp)
            return
        for name in a.sets:
            for arm in a.arms.split(","):
                out = tmp / f"{name}-{arm}"
                wall, peak, res = run([*sets[name], "--out", str(out), "--strategies", arm, "--no-assess",
                                       "--no-check-labels", "--config", str(tmp / "cfg.json")],
                                      str(tmp / f"cache-{name}"))
                m = res["strategies"][arm]
                unit = json.loads((out / arm / "seed0" / "result.json").read_text())
                epochs = m["epochs_run"][0] if m["epoch_budget"] else 0
                print(f"{name:<12}{arm:<14}{100 * m['accuracy']:>8.1f}%  [{100 * m['accuracy_ci'][0]:.1f}, "
                      f"{100 * m['accuracy_ci'][1]:.1f}]".ljust(27)
                      + f"{m['trainable_params']:>12,}{100 * m['trainable_params'] / m['total_params']:>7.2f}%"
                      f"{unit.get('adapter_mb', 0):>11.2f}{peak:>9.2f}{m['train_seconds']:>9.1f}"
                      f"{(m['train_seconds'] / epochs if epochs else 0):>9.1f}", flush=True)


def together(name: str, data: list[str], arms: str, tmp: Path) -> None:
    """Every arm in one run, then `headstart predict` with the exported model on five test inputs."""
    import subprocess
    out = tmp / f"{name}-together"
    wall, peak, res = run([*data, "--out", str(out), "--strategies", arms, "--no-check-labels",
                           "--config", str(tmp / "cfg.json")], str(tmp / f"cache-{name}"))
    split = json.loads((out / "split.json").read_text())
    root = Path(res["data"]["root"])
    items = [str(p if Path(p).is_absolute() else root / p) for p, _ in split["test"][:5]]
    if res["data"]["modality"] == "text":
        items = [f"text:{q}" for q in ("What is the capital of Peru ?", "Who wrote Hamlet ?",
                                       "How many legs does a spider have ?")]
    p = subprocess.run([sys.executable, "-m", "headstart", "predict", str(out / "model"), *items, "--format", "csv"],
                       capture_output=True, text=True)
    rows = [r for r in p.stdout.splitlines()[1:] if r]
    print(f"{name}: {wall:.0f} s, deployed {res['recommended']} ("
          + ", ".join(f"{s} {100 * m['accuracy']:.1f}%" for s, m in res["strategies"].items() if "accuracy" in m)
          + f"); predict exit {p.returncode}, {len(rows)} rows: {rows[:2]}", flush=True)


if __name__ == "__main__":
    main()
