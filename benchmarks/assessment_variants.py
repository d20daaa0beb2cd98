"""Held-out check of the assessment's two predictions on controlled variants of the shared sets (issue 17).

    python benchmarks/assessment_variants.py                    # every variant (~25 min on 2 cores)
    python benchmarks/assessment_variants.py hym-gray-inv trec-shuffled-20

The rules in pipeline/assess.py were fixed before these runs, so every row is held out. Each variant runs the
default `headstart run` (assessment, 4 strategies, racing on, seed 0) and prints, for transfer vs scratch and
transfer vs the classic baseline, the prediction, the measured paired difference on test and whether it held.
Second batch: hymenoptera with 10% and 50% of its training labels, as texture-only crops (a random 1/16 of each
image, scaled up); TREC at 50 per class with 30% of training labels flipped; sklearn digits at 100 per class
(96 px), a case where scratch should be competitive; FSDD at 30 clips per class with 30% of training labels
flipped, read by the speech backbone.
Third batch: TREC with 10%, 25% and 50% of each class's training questions (class balance kept), FSDD with 10%,
25% and 50% of each digit's training clips (official test split).
Variants: hymenoptera in grayscale and inverted (far from ImageNet photos), heavily blurred, with 25% of its
training labels, with 30% of its training labels flipped; TREC at 20 questions per class with the words of every
question shuffled (no syntax left); FSDD's spoken digits as spectrogram images (30 per class), read by the image
backbone.
"""
from __future__ import annotations

import csv
import random
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).parent))
from bf16_parity import DATA  # noqa: E402
from trec import per_class, to_csv  # noqa: E402


def _images(dst: Path, transform=None, keep=1.0, flip=0.0, seed=0) -> Path:
    src, rng = DATA / "hymenoptera", random.Random(seed)
    classes = sorted(p.name for p in (src / "train").iterdir() if p.is_dir())
    for role in ("train", "val"):
        for c in classes:
            files = sorted((src / role / c).iterdir())
            if role == "train":
                files = files[: max(3, int(round(keep * len(files))))]
            for f in files:
                label = c
                if role == "train" and rng.random() < flip:
                    label = rng.choice([x for x in classes if x != c])
                out = dst / role / label / f"{c}-{f.name}"
                out.parent.mkdir(parents=True, exist_ok=True)
                img = Image.open(f).convert("RGB")
                (transform(img) if transform else img).save(out.with_suffix(".jpg"), quality=92)
    return dst


def _spectrograms(dst: Path, per_class: int = 30, seed: int = 0) -> Path:
    """FSDD as images: log-magnitude spectrogram PNGs (224 x 224), recordings 0-4 as test, `per_class` for train."""
    import numpy as np
    import soundfile as sf
    from scipy.signal import spectrogram
    rng = random.Random(seed)
    files = sorted((DATA / "fsdd" / "recordings").glob("*.wav"))
    rng.shuffle(files)
    seen: dict = {}
    for f in files:
        digit, _, idx = f.stem.split("_")
        role = "test" if int(idx) <= 4 else "train"
        if role == "train":
            if seen.get(digit, 0) >= per_class:
                continue
            seen[digit] = seen.get(digit, 0) + 1
        x, rate = sf.read(f, dtype="float32", always_2d=True)
        _, _, spec = spectrogram(x.mean(1), fs=rate, nperseg=256, noverlap=192)
        db = np.log10(spec + 1e-10)
        img = ((db - db.min()) / max(1e-6, db.max() - db.min()) * 255).astype(np.uint8)[::-1]
        out = dst / role / digit / f"{f.stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).resize((224, 224), Image.BICUBIC).convert("RGB").save(out)
    return dst


def _fsdd_audio(dst: Path, per_class: int = 30, flip: float = 0.0, seed: int = 0, keep: float = 0.0) -> Path:
    """FSDD clips as an audio folder (symlinks): recordings 0-4 as test, `per_class` for train (or the fraction
    `keep` of each digit's training clips), with `flip` of the training labels moved to another digit's folder (the
    test clips keep their labels)."""
    rng = random.Random(seed)
    if keep:
        per_class = round(keep * sum(1 for f in (DATA / "fsdd" / "recordings").glob("0_*.wav")
                                     if int(f.stem.split("_")[2]) > 4))
    files = sorted((DATA / "fsdd" / "recordings").glob("*.wav"))
    rng.shuffle(files)
    seen: dict = {}
    digits = sorted({f.stem.split("_")[0] for f in files})
    for f in files:
        digit, _, idx = f.stem.split("_")
        role = "test" if int(idx) <= 4 else "train"
        label = digit
        if role == "train":
            if seen.get(digit, 0) >= per_class:
                continue
            seen[digit] = seen.get(digit, 0) + 1
            if rng.random() < flip:
                label = rng.choice([d for d in digits if d != digit])
        out = dst / role / label / f.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.symlink_to(f)
    return dst


def _texture_crop(img: Image.Image, rng=random.Random(0)) -> Image.Image:
    """A random patch of a quarter of each side (1/16 of the area), scaled back up: texture and colour stay, the
    object's shape is gone."""
    w, h = img.size
    cw, ch = max(8, w // 4), max(8, h // 4)
    x, y = rng.randrange(0, w - cw + 1), rng.randrange(0, h - ch + 1)
    return img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)


def _digits(dst: Path, per_class: int) -> Path:
    from headstart.app.demo import write_digits
    return write_digits(dst, per_class)


def _trec_shuffled(dst: Path, per_class_n: int = 20, seed: int = 0, shuffle_words: bool = True,
                   flip: float = 0.0, fraction: float = 0.0) -> list[str]:
    """TREC train/test tables: `per_class_n` questions per class (or the fraction `fraction` of every class, the
    class balance kept), words shuffled and training labels flipped as asked."""
    rng = random.Random(seed)
    dst.mkdir(parents=True, exist_ok=True)
    to_csv(DATA / "trec" / "train_5500.label", dst / "all.csv")
    to_csv(DATA / "trec" / "TREC_10.label", dst / "test.csv")
    rows = list(csv.DictReader(open(dst / "all.csv")))
    if fraction:
        rng.shuffle(rows)
        keep = []
        for c in sorted({r["label"] for r in rows}):
            of_c = [r for r in rows if r["label"] == c]
            keep += of_c[: max(3, round(fraction * len(of_c)))]
    else:
        keep = per_class(rows, per_class_n, rng)
    labels = sorted({r["label"] for r in keep})
    for r in keep:          # label noise on the training table only; the test table stays clean
        if flip and rng.random() < flip:     # no draw without noise: the batch-1 variants replay exactly
            r["label"] = rng.choice([x for x in labels if x != r["label"]])
    for name, rs in (("train.csv", keep), ("test.csv", list(csv.DictReader(open(dst / "test.csv"))))):
        for r in rs if shuffle_words else []:
            words = r["text"].split()
            rng.shuffle(words)
            r["text"] = " ".join(words)
        with open(dst / name, "w", newline="") as f:
            w = csv.DictWriter(f, ["text", "label"])
            w.writeheader()
            w.writerows(rs)
    return [str(dst / "train.csv"), str(dst / "test.csv")]


VARIANTS = {
    "hym-gray-inv": lambda t: {"data": str(_images(t, lambda im: ImageOps.invert(ImageOps.grayscale(im)).convert(
        "RGB")))},
    "hym-blur": lambda t: {"data": str(_images(t, lambda im: im.filter(ImageFilter.GaussianBlur(8))))},
    "hym-25pct": lambda t: {"data": str(_images(t, keep=0.25))},
    "hym-noise30": lambda t: {"data": str(_images(t, flip=0.3))},
    "trec-shuffled-20": lambda t: dict(zip(("data", "test_file"), _trec_shuffled(t))),
    "fsdd-spectrogram-30": lambda t: {"data": str(_spectrograms(t))},
    # second batch (session 7), also run after the rules were fixed
    "hym-10pct": lambda t: {"data": str(_images(t, keep=0.10))},
    "hym-50pct": lambda t: {"data": str(_images(t, keep=0.50))},
    "hym-texture": lambda t: {"data": str(_images(t, _texture_crop))},
    "trec-50-noise30": lambda t: dict(zip(("data", "test_file"), _trec_shuffled(t, 50, shuffle_words=False,
                                                                                flip=0.3))),
    "digits-100": lambda t: {"data": str(_digits(t, 100)), "image_size": 96, "epochs": 15},
    "fsdd-30-noise30": lambda t: {"data": str(_fsdd_audio(t, 30, flip=0.3))},
    # third batch (session 8): label fractions of the text and speech sets, as asked by the issue
    "trec-10pct": lambda t: dict(zip(("data", "test_file"), _trec_shuffled(t, shuffle_words=False, fraction=0.10))),
    "trec-25pct": lambda t: dict(zip(("data", "test_file"), _trec_shuffled(t, shuffle_words=False, fraction=0.25))),
    "trec-50pct": lambda t: dict(zip(("data", "test_file"), _trec_shuffled(t, shuffle_words=False, fraction=0.50))),
    "fsdd-10pct": lambda t: {"data": str(_fsdd_audio(t, keep=0.10))},
    "fsdd-25pct": lambda t: {"data": str(_fsdd_audio(t, keep=0.25))},
    "fsdd-50pct": lambda t: {"data": str(_fsdd_audio(t, keep=0.50))},
}


def main():
    from headstart.app.run import run_experiment
    from headstart.core.config import RunConfig
    only = sys.argv[1:]
    if not (DATA / "hymenoptera").exists():
        print(f"skip: {DATA} not present")
        return
    print("| variant | labels/class | k-NN frozen | k-NN raw | vs scratch: predicted | measured | held? | "
          "vs classic: predicted | measured | held? |")
    print("|" + "---|" * 10)
    held = {True: "yes", False: "NO", None: "—"}
    for name, make in VARIANTS.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as t:
            res = run_experiment(RunConfig(out=str(Path(t) / "run"), **make(Path(t) / "data")), log=lambda *a: None)
        a = res["assessment"]
        s, c = a["scores"], a["check"]
        cells = []
        for key in ("vs_scratch", "vs_classic"):
            r = c["rows"][key]
            m = (f"{c['best_transfer']} − {r['baseline']} {100 * r['difference']:+.1f} "
                 f"[{100 * r['ci'][0]:+.1f}, {100 * r['ci'][1]:+.1f}]" + (" (scratch bounded)" if r.get("bounded")
                                                                             else "")) if "difference" in r else "—"
            cells += [r["predicted"], m, held[r["agrees"]]]
        print(f"| {name} | {a['train_per_class_median']:.0f} | {100 * s['knn']:.1f}% | {100 * s['knn_raw']:.1f}% | "
              + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
