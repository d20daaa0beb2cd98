"""Speed, side by side in one process: headstart's paths against plain references written the obvious way.

    python benchmarks/speed.py [--reps 3] [--only features,finetune,predict,text,audio,growth]

Reference loops follow the PyTorch transfer-learning tutorial (torchvision transforms on PIL images every pass,
NCHW float32, no_grad) and Hugging Face's usual recipe (tokenizer + AutoModel, batches padded to their longest).
Repetitions alternate between headstart and the reference; medians are printed. Data: ../shared/data (skips what
is absent). Timings never live in the test suite.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA  # noqa: E402

HYM = DATA / "hymenoptera"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def alternate(fns: dict, reps: int) -> dict:
    times = {k: [] for k in fns}
    outs = {}
    for _ in range(reps):
        for k, fn in fns.items():
            t, outs[k] = timed(fn)
            times[k].append(t)
    return {k: (statistics.median(v), outs[k]) for k, v in times.items()}


def files_of(root: Path, exts=(".jpg", ".jpeg", ".png")) -> list[tuple[Path, int]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    return [(f, k) for k, c in enumerate(classes) for f in sorted((root / c).iterdir()) if f.suffix.lower() in exts]


def naive_image_features(model, files, mean, std, size=224, batch=32):
    """The tutorial's way: PIL decode at full size, Resize(256), CenterCrop(224), ToTensor, Normalize, NCHW fp32."""
    from PIL import Image
    from torchvision import transforms as T
    tf = T.Compose([T.Resize(int(size / 0.875)), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])
    model = model.eval().to(memory_format=torch.contiguous_format)
    out = []
    with torch.no_grad():
        for i in range(0, len(files), batch):
            x = torch.stack([tf(Image.open(f).convert("RGB")) for f, _ in files[i: i + batch]])
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
    return np.concatenate(out)


def image_features(reps: int):
    from headstart.models.factory import create_backbone
    from headstart.models.bnfold import folded_batchnorm
    from headstart.modalities.image import load_image_folder
    from headstart.modalities.image import embed, preprocess
    from headstart.stats.probe import fit_probe
    model, spec = create_backbone("efficientnet_lite0", 2)
    files = files_of(HYM / "train") + files_of(HYM / "val")
    n = len(files)

    def ours(dtype="float32"):      # as units.features runs it: BatchNorm folded into the convolutions
        ds = load_image_folder(HYM, short_side=spec.short_side())
        with folded_batchnorm(model):
            return embed(model, spec, ds.items, 224, dtype=dtype), ds

    x = preprocess(torch.randint(0, 255, (64, 3, 224, 224), dtype=torch.uint8), spec)
    m_cl = model.eval().to(memory_format=torch.channels_last)

    def synthetic(bf16=False):      # the same model (folded) on tensors already in memory: no data path at all
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), \
                folded_batchnorm(m_cl):
            for _ in range(-(-n // 64)):
                m_cl.forward_head(m_cl.forward_features(x), pre_logits=True)
    r = alternate({"headstart fp32": ours, "headstart bf16": lambda: ours("bfloat16"),
                   "synthetic in-memory fp32": synthetic, "synthetic in-memory bf16": lambda: synthetic(True),
                   "naive reference": lambda: naive_image_features(model, files, spec.mean, spec.std)}, reps)
    base = r["naive reference"][0]
    print(f"\n### Feature extraction, hymenoptera ({n} images, Lite0, files on disk -> features)\n")
    print("| path | seconds (median) | images/s | vs naive | share of synthetic throughput (same dtype) |\n"
          "|---|---|---|---|---|")
    for k, (t, _) in r.items():
        syn = r["synthetic in-memory bf16" if "bf16" in k else "synthetic in-memory fp32"][0]
        print(f"| {k} | {t:.2f} | {n / t:.1f} | {base / t:.2f}x | {syn / t:.2f} |")
    # bf16 only if the probe's accuracy stays within noise
    (f32, ds), (bf, _) = r["headstart fp32"][1], r["headstart bf16"][1]
    from headstart.stats.split import make_split
    split = make_split(ds.sources, ds.labels, ds.classes, 0.2, 0.2, 0)
    y = np.asarray(ds.labels)
    accs = {}
    for name, f in (("fp32", f32), ("bf16", bf)):
        p = fit_probe(f, ds.labels, split, [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], 2)
        accs[name] = float((p.logits(f[split["test"]]).argmax(1) == y[split["test"]]).mean())
    print(f"\nlinear-probe test accuracy: fp32 {accs['fp32']:.3f}, bf16 {accs['bf16']:.3f} "
          f"(max |feature difference| {np.abs(f32 - bf).max():.3f}); cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    naive_feats = r["naive reference"][1]
    t0 = time.perf_counter()
    from sklearn.linear_model import LogisticRegression
    LogisticRegression(max_iter=3000).fit(naive_feats, [k for _, k in files])
    print(f"sklearn LogisticRegression on the naive features: {time.perf_counter() - t0:.2f} s "
          "(the head fit is negligible next to extraction on either path)")


def finetune_epochs(reps: int):
    """headstart finetune (top 2 groups) with and without the trunk cache and BatchNorm folding; test accuracy of
    each; plus scratch. s / epoch is the median over epochs where both top groups train (epoch 0 trains one)."""
    from headstart.core.config import RunConfig
    from headstart.app.run import run_experiment
    from headstart.core.results import unit_result
    print("\n### Fine-tune (top 2 block groups) and scratch epochs, hymenoptera, Lite0 224 px\n")
    print("| arm | epochs | s / epoch, top 2 groups training (median) | images/s | test accuracy | "
          "train s (incl. cache) |\n|---|---|---|---|---|---|")
    arms = [("finetune, trunk cache (4 views; trunk pass in bf16 where supported), BatchNorm folded (default)",
             dict(trunk_views=4)),
            ("finetune, trunk cache (4 views), float32, BatchNorm folded", dict(trunk_views=4, feature_dtype="float32")),
            ("finetune, whole network each epoch, BatchNorm folded", dict(trunk_views=0)),
            ("finetune, trunk cache (4 views), BatchNorm unfolded", dict(trunk_views=4, fold_batchnorm=False)),
            ("finetune, whole network each epoch, BatchNorm unfolded", dict(trunk_views=0, fold_batchnorm=False))]
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for rep in range(reps):
            for i, (name, kw) in enumerate(arms + ([("scratch", dict(strategies=["scratch"]))] if rep == 0 else [])):
                kw = dict(kw)
                cfg = RunConfig(data=str(HYM), out=f"{tmp}/{rep}-{i}", assess=False,
                                strategies=kw.pop("strategies", ["finetune"]), cache_dir=f"{tmp}/cache", **kw)
                res = run_experiment(cfg, log=lambda *a: None)
                s = cfg.strategies[0]
                r = unit_result(Path(cfg.out), s, 0)
                most = max(h["trainable_params"] for h in r["history"])
                per = statistics.median(h["seconds"] for h in r["history"] if h["trainable_params"] == most)
                rows.setdefault(name, []).append((per, res["strategies"][s]["accuracy"], r["train_seconds"],
                                                  len(r["history"]), res["data"]["counts"]["train"]))
        med = {}
        for name, vals in rows.items():
            med[name] = per = statistics.median(v[0] for v in vals)
            n_train = sum(vals[0][4].values())
            print(f"| {name} | {vals[0][3]} | {per:.2f} | {n_train / per:.0f} | "
                  f"{', '.join(f'{v[1]:.3f}' for v in vals)} | {statistics.median(v[2] for v in vals):.1f} |")
        default, whole = arms[0][0], arms[2][0]
        print(f"\nwhole network / trunk cache, per epoch: {med[whole] / med[default]:.2f}x (both folded); "
              f"{med[arms[4][0]] / med[arms[3][0]]:.2f}x (both unfolded); folding alone: whole network "
              f"{med[arms[4][0]] / med[whole]:.2f}x, trunk cache {med[arms[3][0]] / med[default]:.2f}x")


def predict_speed(reps: int):
    from headstart.models.factory import create_backbone
    from headstart.modalities.image import image_runner
    from headstart.outputs.export import save_model
    from headstart.modalities.image import preprocess
    model, spec = create_backbone("efficientnet_lite0", 2)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp) / "m", model.eval(), spec, ["a", "b"], 224)
        x = preprocess(torch.randint(0, 255, (32, 3, 224, 224), dtype=torch.uint8), spec)
        runs = {name: image_runner(Path(tmp) / "m", model, rt)[1] for name, rt in
                (("onnxruntime", "onnx"), ("pytorch eager", "torch"))}
        diff = float((runs["onnxruntime"](x) - runs["pytorch eager"](x)).abs().max())
        r = alternate({k: (lambda f=f: [f(x) for _ in range(8)]) for k, f in runs.items()}, reps)
    print("\n### Predict (exported model, batches of 32 at 224 px, model only)\n")
    print("| runtime | images/s |\n|---|---|")
    for k, (t, _) in r.items():
        print(f"| {k} | {8 * 32 / t:.1f} |")
    print(f"\nmax |logit difference| ONNX Runtime vs PyTorch: {diff:.2e}")


def text_features(reps: int):
    from transformers import AutoModel, AutoTokenizer

    from headstart.models.factory import create_backbone
    from headstart.modalities.text import embed_texts, tokenize
    from trec import to_csv
    with tempfile.TemporaryDirectory() as tmp:
        to_csv(DATA / "trec" / "train_5500.label", Path(tmp) / "t.csv")
        import csv
        texts = [r["text"] for r in csv.DictReader(open(Path(tmp) / "t.csv"))]
    model, spec = create_backbone("minilm_l6", 6)
    tok = AutoTokenizer.from_pretrained(spec.path)
    hf = AutoModel.from_pretrained(spec.path).eval()

    def naive():
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 32):
                b = tok(texts[i: i + 32], padding=True, truncation=True, max_length=256, return_tensors="pt")
                h = hf(**b).last_hidden_state
                m = b["attention_mask"].unsqueeze(-1).float()
                out.append(((h * m).sum(1) / m.sum(1)).numpy())
        return np.concatenate(out)
    r = alternate({"headstart (length-sorted batches of 128)": lambda: embed_texts(
        model, tokenize(spec.path, texts, 256)[0]), "naive reference (HF, batches of 32 in file order)": naive}, reps)
    print(f"\n### Text features, TREC ({len(texts)} questions, MiniLM-L6, tokenization included)\n")
    print("| path | seconds | texts/s |\n|---|---|---|")
    for k, (t, _) in r.items():
        print(f"| {k} | {t:.1f} | {len(texts) / t:.0f} |")


def growth(reps: int):
    """Feature extraction + probe wall time at 25/50/100% of TREC: linear in N, head fit negligible."""
    from headstart.models.factory import create_backbone
    from headstart.stats.probe import fit_probe
    from headstart.modalities.text import embed_texts, tokenize
    from trec import to_csv
    with tempfile.TemporaryDirectory() as tmp:
        to_csv(DATA / "trec" / "train_5500.label", Path(tmp) / "t.csv")
        import csv
        rows = list(csv.DictReader(open(Path(tmp) / "t.csv")))
    model, spec = create_backbone("minilm_l6", 6)
    classes = sorted({r["label"] for r in rows})
    print("\n### Cost growth, TREC: feature extraction + linear probe vs N\n")
    print("| share | N | extract s | probe fit s |\n|---|---|---|---|")
    pts = []
    for share in (0.25, 0.5, 1.0):
        sub = rows[: int(len(rows) * share)]
        ext = statistics.median(timed(lambda: embed_texts(model, tokenize(spec.path, [r["text"] for r in sub], 256)[0]))[0]
                                for _ in range(reps))
        feats = embed_texts(model, tokenize(spec.path, [r["text"] for r in sub], 256)[0])
        y = [classes.index(r["label"]) for r in sub]
        idx = np.random.default_rng(0).permutation(len(sub))
        split = {"train": list(idx[: len(sub) * 6 // 10]), "val": list(idx[len(sub) * 6 // 10: len(sub) * 8 // 10]),
                 "test": list(idx[len(sub) * 8 // 10:])}
        fit_s = timed(lambda: fit_probe(feats, y, split, [0.1, 1.0, 10.0], len(classes)))[0]
        pts.append((len(sub), ext + fit_s))
        print(f"| {share:.0%} | {len(sub)} | {ext:.1f} | {fit_s:.1f} |")
    n, t = np.array(pts).T
    slope, icpt = np.polyfit(n, t, 1)
    r2 = 1 - ((t - (slope * n + icpt)) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    print(f"\nfitted: {1000 * slope:.2f} ms per question + {icpt:.1f} s fixed (R² {r2:.3f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="features,finetune,predict,text,growth")
    a = ap.parse_args()
    import platform
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    parts = {"features": image_features, "finetune": finetune_epochs, "predict": predict_speed,
             "text": text_features, "growth": growth}
    need = {"features": HYM, "finetune": HYM, "predict": HYM, "text": DATA / "trec", "growth": DATA / "trec"}
    for name in a.only.split(","):
        if not need[name].exists():
            print(f"skip {name}: {need[name]} not present")
            continue
        parts[name](a.reps if name != "finetune" else max(1, a.reps // 2))


if __name__ == "__main__":
    main()
