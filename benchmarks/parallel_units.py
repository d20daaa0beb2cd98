"""Two independent training units on this machine: one after the other with every core, or side by side with
the cores shared out? The evidence behind --jobs 0 (grid.auto_jobs).

    python benchmarks/parallel_units.py [--steps 12]     # ~3 minutes on 2 cores

Each unit is `steps` Lite0 training steps (224 px, batch 32, float32, channels-last input), as scratch runs them.
Sequential: one process with all cores runs two units. Parallel: two processes, each with cores/2 threads, run
one unit each at the same time. Prints the wall time of both ways, alternating, and the ratio.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

UNIT = """
import sys, time, torch, timm
torch.set_num_threads(int(sys.argv[1]))
m = timm.create_model("efficientnet_lite0", num_classes=2).train()
opt = torch.optim.AdamW(m.parameters(), 1e-3)
x = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 2, (32,))
for _ in range(int(sys.argv[2]) * int(sys.argv[3])):
    loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
"""


def wall(cmds: list[list[str]]) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c) for c in cmds]
    for p in procs:
        assert p.wait() == 0
    return time.perf_counter() - t0


def main():
    steps = sys.argv[sys.argv.index("--steps") + 1] if "--steps" in sys.argv else "12"
    cores = len(os.sched_getaffinity(0))
    half = str(max(1, cores // 2))
    py = [sys.executable, "-c", UNIT]
    print(f"{cores} cores; 2 units of {steps} Lite0 training steps each")
    for rep in range(2):
        seq = wall([py + [str(cores), steps, "2"]])
        par = wall([py + [half, steps, "1"], py + [half, steps, "1"]])
        print(f"rep {rep}: one after the other at {cores} threads {seq:.1f} s; side by side at {half} thread(s) each "
              f"{par:.1f} s; side by side is {seq / par:.2f}x", flush=True)


if __name__ == "__main__":
    main()
