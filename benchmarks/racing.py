"""Does racing scratch against transfer change any answer, and what does it save?

    python benchmarks/racing.py time --before 4b6e6c9 --reps 2     # default hymenoptera run, old code vs this tree
    python benchmarks/racing.py time --codes after --reps 2        # this tree only
    python benchmarks/racing.py agree hymenoptera fsdd digits-20 digits-130 trec --seeds 3

`time`: the default `headstart run ../shared/data/hymenoptera` in fresh processes with cold caches, alternating
between the code at git ref --before (checked out into a temporary worktree) and this working tree; prints wall
time, peak memory, the scratch unit's share of the run, and the recommendation of each run.
`agree`: for each set, the default strategies with --seeds N, once with racing (the default) and once with
--full-scratch; prints the recommended arm, the transfer-vs-scratch verdict (paired test difference of the best
transfer arm on validation, beyond noise or not), scratch epochs and scratch time, for both. digits-K is the
demo's data (sklearn digits, 96 px) with K labelled images per digit (130 = all the digits left after the test
set: the case where scratch is strongest); digits-K@224 trains at 224 px, where scratch resizes progressively.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bf16_parity import each_set, layout  # noqa: E402
from hymenoptera import DATA, run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def data_args(name: str, tmp: Path) -> list[str] | None:
    if name.startswith("digits-"):
        from headstart.app.demo import DEMO_SIZE, write_digits
        per, _, size = name.split("-")[1].partition("@")
        return [str(write_digits(tmp / name, int(per))), "--image-size", size or str(DEMO_SIZE), "--epochs", "15",
                "--config", str(_demo_config(tmp))]
    return layout(name, tmp)


def _demo_config(tmp: Path) -> Path:
    p = tmp / "demo.json"
    p.write_text('{"augment": "crop", "crop_scale": 0.7}')
    return p


def verdict(res: dict) -> str:
    ok = {s: m for s, m in res["strategies"].items() if "failed" not in m}
    t = max((s for s in ok if s in ("linear-probe", "finetune")), key=lambda s: ok[s]["val_acc"])
    d = res["paired_differences"].get(f"{t} - scratch")
    word = ("transfer wins" if d["difference"] > 0 else "scratch wins") if d["significant"] else "tie"
    return f"{word} ({t} {100 * d['difference']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}])"


def agree(names: list[str], seeds: int) -> None:
    print(f"{'set':<12}{'racing':<8}{'recommended':<14}{'verdict':<44}{'scratch epochs':<18}{'scratch s':>10}"
          f"{'run s':>8}", flush=True)
    for name, tmp, args in each_set(names, data_args):
        for mode, extra in (("on", []), ("off", ["--full-scratch", "--no-progressive-resize"])):
            wall, _, res = run([*args, "--out", str(tmp / mode), "--seeds", str(seeds), "--jobs", "1", *extra],
                               str(tmp / f"cache-{mode}"))
            sc = res["strategies"]["scratch"]
            print(f"{name:<12}{mode:<8}{res['recommended']:<14}{verdict(res):<44}"
                  f"{'/'.join(map(str, sc['epochs_run'])) + ' of ' + str(sc['epoch_budget']):<18}"
                  f"{sc['train_seconds']:>10.1f}{wall:>8.1f}", flush=True)


def timing(before: str, reps: int, codes: list[str]) -> None:
    root = DATA / "hymenoptera"
    if not root.exists():
        print(f"skip: {root} not present")
        return
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tmp / "before"), before],
                       check=True, capture_output=True)
        try:
            print(f"{'code':<10}{'wall s':>8}{'peak GiB':>10}{'scratch s':>10}{'share':>7}  recommended, scratch "
                  "epochs", flush=True)
            for rep in range(reps):
                for code, src in (("before", tmp / "before" / "src"), ("after", REPO / "src")):
                    if code not in codes:
                        continue
                    os.environ["PYTHONPATH"] = str(src)
                    out = tmp / f"{code}{rep}"
                    wall, peak, res = run([str(root), "--out", str(out)], str(tmp / f"cache-{code}{rep}"))
                    sc = res["strategies"]["scratch"]
                    unit = (sc.get("compute") or {}).get("wall_seconds", sc["train_seconds"])
                    print(f"{code:<10}{wall:>8.1f}{peak:>10.2f}{unit:>10.1f}{unit / wall:>7.0%}  "
                          f"{res['recommended']}, {sc['epochs_run']} of {sc['epoch_budget']}", flush=True)
        finally:
            os.environ.pop("PYTHONPATH", None)
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp / "before")],
                           capture_output=True)


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("time", "agree"):
        raise SystemExit(__doc__)
    argv = sys.argv[2:]
    opt = lambda name, default: argv[argv.index(name) + 1] if name in argv else default  # noqa: E731
    if sys.argv[1] == "time":
        timing(opt("--before", "HEAD"), int(opt("--reps", "2")), opt("--codes", "before,after").split(","))
    else:
        names = [a for i, a in enumerate(argv) if not a.startswith("--") and (i == 0 or not argv[i - 1].startswith("--"))]
        agree(names or ["hymenoptera", "digits-20", "fsdd"], int(opt("--seeds", "3")))


if __name__ == "__main__":
    main()
