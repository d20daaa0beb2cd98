"""Calibration of the assessment's verdict: assess, then run every arm, on tasks whose outcome we measure.

    python benchmarks/calibrate_assessment.py [task ...]     # default: all tasks below; prints one table row each
    python benchmarks/calibrate_assessment.py --assess-only  # the assessment columns only (no training)

Tasks: sklearn digits at 5/20/50 labels per class (far from ImageNet), hymenoptera (near ImageNet) full and at
8 labels per class, TREC and FSDD at 20 and 5 per class and full (from ../shared/data; skipped when absent; the
full text/speech tasks run without the scratch arm, which takes hours on a CPU). Subsets hold out 40 items per
class for test (FSDD), or use the official test set (TREC) or the given val/ folder (hymenoptera).
Each row: k-NN accuracy on frozen features vs raw inputs, LogME, early/late BatchNorm shift, the verdict, and
what the run then measured (best transfer arm - best from-scratch arm on test, paired 95% CI).
"""
from __future__ import annotations

import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA  # noqa: E402
from trec import to_csv  # noqa: E402


def subset_folder(src: Path, dst: Path, per_class: int, seed: int = 0) -> Path:
    """Symlink `per_class` files of each class (train role) beside the full test role."""
    rng = random.Random(seed)
    for cdir in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(cdir.iterdir())
        rng.shuffle(files)
        for role, chosen in (("train", files[:per_class]), ("test", files[per_class:][:40])):
            (dst / role / cdir.name).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                (dst / role / cdir.name / f.name).symlink_to(f.resolve())
    return dst


def trec_subset(tmp: Path, per_class: int) -> Path:
    to_csv(DATA / "trec" / "train_5500.label", tmp / "all.csv")
    rows = list(csv.DictReader(open(tmp / "all.csv")))
    random.Random(0).shuffle(rows)
    keep, seen = [], {}
    for r in rows:
        if seen.get(r["label"], 0) < per_class:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            keep.append(r)
    with open(tmp / "sub.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(keep)
    to_csv(DATA / "trec" / "TREC_10.label", tmp / "test.csv")
    return tmp / "sub.csv"


def tasks(tmp: Path):
    from headstart.app.demo import DEMO_SIZE, write_digits
    digits = dict(image_size=DEMO_SIZE, augment="crop", crop_scale=0.7, epochs=15)
    for n in (5, 20, 50):
        yield f"digits-{n}", lambda n=n: dict(data=str(write_digits(tmp / f"digits-{n}", n)), **digits)
    hym = DATA / "hymenoptera"
    if hym.exists():
        yield "hymenoptera-8", lambda: dict(data=str(subset_folder(hym / "train", tmp / "hym8", 8)))
        yield "hymenoptera", lambda: dict(data=str(hym))
    no_scratch = ["classic", "linear-probe", "finetune"]     # a 22M-parameter text/speech scratch arm: hours on CPU
    if (DATA / "trec").exists():
        yield "trec-20", lambda: dict(data=str(trec_subset(tmp, 20)), test_file=str(tmp / "test.csv"))
        yield "trec", lambda: dict(data=str(trec_subset(tmp, 10 ** 6)), test_file=str(tmp / "test.csv"),
                                   strategies=no_scratch)
    fsdd = DATA / "fsdd" / "recordings"
    if fsdd.exists():
        def fsdd5():
            by_digit = tmp / "fsdd-by-digit"
            if by_digit.exists():
                return by_digit
            for f in sorted(fsdd.glob("*.wav")):
                (by_digit / f.name[0]).mkdir(parents=True, exist_ok=True)
                (by_digit / f.name[0] / f.name).symlink_to(f.resolve())
            return by_digit

        yield "fsdd-5", lambda: dict(data=str(subset_folder(fsdd5(), tmp / "fsdd5", 5)))
        yield "fsdd", lambda: dict(data=str(fsdd5()), strategies=no_scratch)     # split carved 60/20/20


def assess_only(tmp: Path, only: set[str]) -> None:
    """--assess-only: the assessment columns with the current code, no training (minutes, not an hour)."""
    from headstart.pipeline.assess import assess
    from headstart.core.config import RunConfig
    from headstart.pipeline.context import build_context as prepare
    print("| task | labels/class | k-NN frozen | k-NN raw | gain | LogME | BN early / late | verdict | try first |")
    print("|" + "---|" * 9)
    for name, make in tasks(tmp):
        if only and name not in only:
            continue
        a = assess(prepare(RunConfig(out=str(tmp / f"assess-{name}"), **make()), log=lambda *a: None))
        s, v, bn = a["scores"], a["verdict"], a["shift"].get("batchnorm")
        bn_s = f"{bn['early']:.2f} / {bn['late']:.2f}" if bn else "—"
        print(f"| {name} | {a['train_per_class_median']:.0f} | {100 * s['knn']:.1f}% | {100 * s['knn_raw']:.1f}% | "
              f"{100 * (s['knn'] - s['knn_raw']):+.1f} | {s['logme']:.3f} | {bn_s} | {v['label']} | "
              f"{v['try_first']} |", flush=True)


def main():
    from headstart.core.config import RunConfig
    from headstart.app.run import run_experiment
    only = {a for a in sys.argv[1:] if not a.startswith("--")}
    if "--assess-only" in sys.argv:
        with tempfile.TemporaryDirectory() as t:
            os.environ.setdefault("HEADSTART_CACHE", str(Path(t) / "cache"))
            return assess_only(Path(t), only)
    print("| task | labels/class | k-NN frozen | k-NN raw | gain | LogME | BN early / late | vs scratch: predicted "
          "| measured (95% CI) | held? | vs classic: predicted | measured (95% CI) | held? | try first | held? "
          "| run s |")
    print("|" + "---|" * 16)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        os.environ.setdefault("HEADSTART_CACHE", str(tmp / "cache"))
        for name, make in tasks(tmp):
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            res = run_experiment(RunConfig(out=str(tmp / f"run-{name}"), **make()), log=lambda *a: None)
            a = res["assessment"]
            s, c, v = a["scores"], a["check"], a["verdict"]
            bn = a["shift"].get("batchnorm")
            bn_s = f"{bn['early']:.2f} / {bn['late']:.2f}" if bn else "—"
            held = {True: "yes", False: "NO", None: "—"}
            cells = []
            for key in ("vs_scratch", "vs_classic"):
                r = c["rows"][key]
                diff = (f"{c['best_transfer']} − {r['baseline']}: {100 * r['difference']:+.1f} "
                        f"[{100 * r['ci'][0]:+.1f}, {100 * r['ci'][1]:+.1f}]") if "difference" in r else r["measured"]
                cells += [str(r["predicted"]), diff, held[r["agrees"]]]
            print(f"| {name} | {a['train_per_class_median']:.0f} | {100 * s['knn']:.1f}% | {100 * s['knn_raw']:.1f}% | "
                  f"{100 * (s['knn'] - s['knn_raw']):+.1f} | {s['logme']:.3f} | {bn_s} | {' | '.join(cells)} | "
                  f"{v['try_first']} | {held[c.get('try_first_agrees')]} | {time.perf_counter() - t0:.0f} |",
                  flush=True)
            accs = ", ".join(f"{k} {100 * m['accuracy']:.1f}%" for k, m in res["strategies"].items() if "accuracy" in m)
            print(f"<!-- {name}: {accs}; assess {a['seconds']:.1f} s (features {a['features_seconds']:.1f} s) -->",
                  flush=True)


if __name__ == "__main__":
    main()
