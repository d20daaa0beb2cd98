"""Benchmark the image workflow on ../shared/data/hymenoptera (2 classes, 244 train / 153 val-as-test).

    python benchmarks/hymenoptera.py            # prints a table: strategy, wall time, peak memory, accuracy

Each strategy runs alone in a fresh `headstart run` process (cold feature cache), so its wall time and peak
memory (max RSS) are its own; then the whole default run (3 strategies, 1 seed) runs once more, cold.
Skips (exit 0) when the data is absent.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("HEADSTART_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def run(args: list[str], cache: str) -> tuple[float, float, dict]:
    """(wall seconds, peak RSS GiB of that process alone, results.json)."""
    env = {**os.environ, "HEADSTART_CACHE": cache}
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "headstart", "run", *args], env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(p.pid, 0)      # rusage of this child only
        wall = time.perf_counter() - t0
        if status:
            log.seek(0)
            sys.exit(log.read())
    out = args[args.index("--out") + 1]
    return wall, usage.ru_maxrss / 2**20, json.loads((Path(out) / "results.json").read_text())


def main():
    root = DATA / "hymenoptera"
    if not root.exists():
        print(f"skip: {root} not present")
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}")
    print(f"{'arm':<30}{'wall s':>8}{'peak GiB':>10}{'test acc':>10}  95% CI")
    with tempfile.TemporaryDirectory() as tmp:
        for s in ("linear-probe", "finetune", "scratch"):
            wall, peak, res = run([str(root), "--out", f"{tmp}/{s}", "--strategies", s], f"{tmp}/cache-{s}")
            m = res["strategies"][s]
            print(f"{s + ' (alone, process)':<30}{wall:>8.1f}{peak:>10.2f}{m['accuracy']:>10.3f}  "
                  f"[{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}]  train {m['train_seconds']:.1f} s, "
                  f"epochs {m['epochs_run']}")
        wall, peak, res = run([str(root), "--out", f"{tmp}/all"], f"{tmp}/cache-all")
        print(f"{'default run (3 strategies)':<30}{wall:>8.1f}{peak:>10.2f}  recommended: {res['recommended']}")
        for k, d in res["paired_differences"].items():
            print(f"  {k}: {100 * d['difference']:+.1f} pts, paired 95% CI "
                  f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]")


if __name__ == "__main__":
    main()
