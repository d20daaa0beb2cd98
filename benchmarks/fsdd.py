"""Benchmark the speech workflow on FSDD (../shared/data/fsdd, official split: recordings 0-4 are test).

    python benchmarks/fsdd.py [--pad30]   # classic (MFCC) and linear probe; --pad30 adds Whisper's 30 s input

Lays the recordings out as train/<digit>/ and test/<digit>/ symlinks in a temp folder, then runs each arm alone
in a fresh `headstart run` process. Skips (exit 0) when the data is absent.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA, run  # noqa: E402


def official_split(dst: Path) -> Path:
    """FSDD as train/<digit>/ and test/<digit>/ symlinks: recordings 0-4 of every speaker are test."""
    for f in (DATA / "fsdd" / "recordings").glob("*.wav"):
        digit, _, idx = f.stem.split("_")
        d = dst / ("test" if int(idx) <= 4 else "train") / digit
        d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f)
    return dst


def main():
    src = DATA / "fsdd" / "recordings"
    if not src.exists():
        print(f"skip: {src} not present")
        return
    print(f"{'arm':<34}{'wall s':>8}{'train s':>9}{'peak GiB':>10}{'test acc':>10}  95% CI")
    with tempfile.TemporaryDirectory() as tmp:
        official_split(Path(tmp) / "fsdd")
        (Path(tmp) / "pad30.json").write_text(json.dumps({"pad_to_30s": True}))
        arms = [("classic", []), ("linear-probe", [])]
        if "--pad30" in sys.argv:
            arms.append(("linear-probe", ["--config", f"{tmp}/pad30.json"]))
        for k, (s, extra) in enumerate(arms):
            wall, peak, res = run([f"{tmp}/fsdd", "--out", f"{tmp}/run{k}", "--strategies", s, *extra],
                                  f"{tmp}/cache{k}")
            m = res["strategies"][s]
            label = s + (" (30 s padded input)" if extra else " (clip-length input)" if s != "classic" else "")
            print(f"{label:<34}{wall:>8.1f}{m['train_seconds']:>9.1f}{peak:>10.2f}{m['accuracy']:>10.3f}  "
                  f"[{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}]")


if __name__ == "__main__":
    main()
