"""Does a refactor change any number? The same `headstart run` with the code at a git ref and with this tree.

    python benchmarks/same_results.py --before d209331 digits-20 trec-300 fsdd-100

For each set: every strategy with its default recipe (short budgets so it runs in minutes), once per code, in
fresh processes with separate feature caches; prints per arm the test accuracy and validation accuracy of both,
the largest absolute difference of any test probability, whether the epochs and the recommendation agree, and
the wall time of each run. digits-K: the demo's data with K images per digit; trec-N / fsdd-N: every k-th item.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bf16_parity import each_set, layout  # noqa: E402
from hymenoptera import run  # noqa: E402
from racing import data_args as racing_args  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHORT = ["--epochs", "2", "--scratch-epochs", "3", "--seeds", "1", "--jobs", "1"]


def data_args(name: str, tmp: Path) -> list[str] | None:
    if name.startswith("fsdd-"):
        args = layout("fsdd", tmp)
        if args is None:
            return None
        step = max(1, 3000 // int(name.split("-")[1]))
        for i, f in enumerate(sorted((tmp / "fsdd").rglob("*.wav"))):
            if i % step:
                f.unlink()
        return args
    return racing_args(name, tmp)


def main():
    argv = sys.argv[1:]
    before = argv[argv.index("--before") + 1] if "--before" in argv else "HEAD"
    names = [a for i, a in enumerate(argv) if not a.startswith("--") and (i == 0 or argv[i - 1] != "--before")]
    with tempfile.TemporaryDirectory() as t:
        wt = Path(t) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(wt), before], check=True,
                       capture_output=True)
        try:
            print(f"{'set':<11}{'arm':<14}{'test acc before/after':>22}{'val acc before/after':>22}"
                  f"{'max |dp|':>10}  epochs same?  recommended same?  wall s before/after", flush=True)
            for name, tmp, args in each_set(names or ["digits-20"], data_args):
                res, wall = {}, {}
                for code, src in (("before", wt / "src"), ("after", REPO / "src")):
                    os.environ["PYTHONPATH"] = str(src)
                    wall[code], _, res[code] = run([*args, *SHORT, "--out", str(tmp / code)], str(tmp / f"c-{code}"))
                b, a = res["before"], res["after"]
                for s, mb in b["strategies"].items():
                    ma = a["strategies"][s]
                    pb = [_probs(tmp / "before", s)]
                    pa = [_probs(tmp / "after", s)]
                    dp = max(float(np.abs(x - y).max()) for x, y in zip(pb, pa))
                    print(f"{name:<11}{s:<14}{mb['accuracy']:>11.4f}/{ma['accuracy']:.4f}"
                          f"{mb['val_acc']:>11.4f}/{ma['val_acc']:.4f}{dp:>10.1e}  "
                          f"{str(mb['epochs_run'] == ma['epochs_run']):<14}"
                          f"{str(b['recommended'] == a['recommended']):<19}"
                          f"{wall['before']:.0f}/{wall['after']:.0f}", flush=True)
        finally:
            os.environ.pop("PYTHONPATH", None)
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(wt)], capture_output=True)


def _probs(run_dir: Path, strategy: str) -> np.ndarray:
    import json
    return np.asarray(json.loads((run_dir / strategy / "seed0" / "result.json").read_text())["test_probs"])


if __name__ == "__main__":
    main()
