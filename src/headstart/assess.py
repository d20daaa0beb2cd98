"""Before training: will transfer help here? Scores, domain shift and a verdict from one frozen feature pass.

    a = assess(ctx)                       # one backbone, on the run's train+val items (never the test split)
    report = run_assess(cfg, ["efficientnet_lite0", "efficientnet_lite1"])   # `headstart assess`: ranking

The verdict compares a k-NN classifier on the frozen features with the same k-NN on the raw inputs (pixels,
TF-IDF, MFCC statistics): the pretrained representation's head start over what scratch starts from. Thresholds
and the strategy hint come from the calibration runs in docs/assessment.md.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np

from headstart.errors import UserError
from headstart.io import read_json, write_json, write_text

# Calibrated in docs/assessment.md on 9 tasks: frozen-feature k-NN minus raw-input k-NN accuracy (cross-validated)
GAIN_HELPS = 0.05          # at or above (+6.7 to +50 measured): transfer won clearly in every such task
GAIN_LITTLE = 0.0          # at or below (-34 to -17 for images): transfer lost to, or tied, the no-pretraining arm
PROBE_FIRST_KNN = 0.85     # frozen features already separate the classes: a linear probe first
FEW_LABELS = 20            # median training labels per class below this: fine-tuning overfits, probe first
EARLY_SHIFT = 0.3          # BatchNorm KL in the first third of layers above this: low-level statistics differ
                           # (ImageNet-like photos: 0.05-0.06; 96 px digits: 0.38)


def assess(ctx) -> dict:
    """Transferability and domain shift for ctx's backbone on the train+val items."""
    from headstart import units
    from headstart.shift import audio_shift, summarize_profile, text_shift
    from headstart.transferability import hscore, knn_accuracy, leep, logme, nce

    t0 = time.perf_counter()
    idx = np.asarray(ctx.split["train"] + ctx.split["val"])
    y = np.asarray(ctx.ds.labels)[idx]
    shift: dict = {}
    if ctx.modality.name == "image":
        profile = _bn_profile(ctx, idx)
        shift = {"batchnorm": summarize_profile(profile), "profile": profile}
    feats = units.features(ctx)[idx]
    t_feats = time.perf_counter() - t0
    scores = {"logme": logme(feats, y), "hscore": hscore(feats, y), "knn": knn_accuracy(feats, y),
              "knn_raw": knn_accuracy(ctx.modality.raw_features(ctx, idx), y)}
    head = _source_head(ctx)
    if head is not None:
        theta = _softmax(feats @ head[0].T + head[1])
        scores.update(leep=leep(theta, y), nce=nce(theta.argmax(1), y))
    if ctx.modality.name == "text":
        shift = {"tokenizer": text_shift(ctx.modality_stats)}
    elif ctx.modality.name == "audio":
        shift = {"signal": audio_shift(ctx.ds.stats, [ctx.ds.items[i] for i in idx])}
    per_class = np.bincount(np.asarray(ctx.ds.labels)[ctx.split["train"]], minlength=len(ctx.ds.classes))
    out = {"backbone": ctx.cfg.backbone, "modality": ctx.modality.name, "n_items": int(len(idx)),
           "train_per_class_median": float(np.median(per_class)), "scores": scores, "shift": shift,
           "features_seconds": t_feats, "seconds": time.perf_counter() - t0,
           "features_cached": bool(ctx.timings.get("features_cached", False))}
    out["verdict"] = verdict(out)
    return out


def verdict(a: dict) -> dict:
    """likely helps / uncertain / likely little gain over scratch, with the evidence and the strategy to try first."""
    s = a["scores"]
    gain = s["knn"] - s["knn_raw"]
    evidence = [f"k-NN on frozen features {100 * s['knn']:.1f}% vs on raw inputs {100 * s['knn_raw']:.1f}% "
                f"({100 * gain:+.1f} pts)"]
    if gain >= GAIN_HELPS:
        label = "likely helps"
    elif gain <= GAIN_LITTLE and a["modality"] != "text":
        label = "likely little gain over scratch"
    else:
        label = "uncertain"
    if a["modality"] == "text" and gain < GAIN_HELPS:
        evidence.append("frozen text features tie TF-IDF here, but frozen features do not show what fine-tuning "
                        "adds: on TREC fine-tuning beat TF-IDF by 7-16 points where frozen features tied")
    bn = a.get("shift", {}).get("batchnorm", {})
    early = bn.get("early", 0.0) > EARLY_SHIFT
    if bn:
        evidence.append(f"BatchNorm shift (KL) early {bn['early']:.2f} / middle {bn['middle']:.2f} / late "
                        f"{bn['late']:.2f}: " + ("low-level statistics differ from the source data" if early
                                                 else "low-level statistics close to the source data"))
    tok = a.get("shift", {}).get("tokenizer", {})
    if tok:
        evidence.append(f"tokenizer: {tok.get('pieces_per_word', 0):.2f} pieces per word, "
                        f"{100 * tok.get('unknown_token_rate', 0):.2f}% unknown tokens, "
                        f"{100 * tok.get('truncated_share', 0):.1f}% of texts truncated")
    sig = a.get("shift", {}).get("signal", {})
    if sig:
        evidence.append(f"audio: {100 * sig['narrowband_share']:.0f}% of files below 16 kHz, median clip "
                        f"{sig['median_seconds']:.1f} s of Whisper's 30 s window")
    few = a.get("train_per_class_median", 1e9) < FEW_LABELS
    if a["modality"] == "text" and gain < GAIN_HELPS:
        first = "finetune"
        why = "all layers with layer-wise LR decay: for text encoders the gain comes from fine-tuning"
    elif s["knn"] >= PROBE_FIRST_KNN or few:
        first = "linear-probe"
        why = ("the frozen features already separate the classes; fine-tune only if the probe falls short"
               if s["knn"] >= PROBE_FIRST_KNN else
               f"with a median of {a['train_per_class_median']:.0f} labels per class fine-tuning tends to overfit")
    elif a["modality"] == "image":
        first = "finetune"
        why = ("unfreeze deeper than the top 2 block groups (e.g. \"unfreeze_groups\": 4 in a --config file): "
               "early layers see unfamiliar statistics" if early
               else "unfreeze the top 2 block groups at a low learning rate")
    else:
        first = "finetune"
        why = "all layers with layer-wise LR decay; the frozen features alone leave accuracy on the table"
    return {"label": label, "gain": gain, "evidence": evidence, "try_first": first, "why": why}


def predicted_vs_measured(a: dict, results: dict) -> dict:
    """Did the verdict hold? Best transfer arm vs best from-scratch arm (each picked on validation), on test."""
    from headstart.report_cost import best_arm
    ok = {s: m for s, m in results["strategies"].items() if "failed" not in m}
    t, b = best_arm(results), best_arm(results, ("scratch", "classic"))
    d = results.get("paired_differences", {}).get(f"{t} - {b}")
    out = {"predicted": a["verdict"]["label"], "try_first": a["verdict"]["try_first"], "best_transfer": t,
           "best_baseline": b}
    if d is None:
        return {**out, "measured": "not measured (needs a transfer arm and a from-scratch arm)", "agrees": None}
    measured = ("transfer helped" if d["significant"] and d["difference"] > 0 else
                "transfer lost" if d["significant"] else "within noise")
    agrees = (None if out["predicted"] == "uncertain" else
              (measured == "transfer helped") == (out["predicted"] == "likely helps"))
    return {**out, "measured": measured, "difference": d["difference"], "ci": d["ci"], "agrees": agrees,
            "try_first_agrees": t == out["try_first"] if "linear-probe" in ok and "finetune" in ok else None}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _source_head(ctx):
    """(W, b) of the backbone's pretrained classifier (e.g. 1000 ImageNet classes), or None if it has none."""
    if ctx.modality.name != "image" or not ctx.spec.source_classes:
        return None
    from headstart.backbones import load_source_model
    clf = load_source_model(ctx.cfg.backbone)[0].get_classifier()
    from headstart.device import to_numpy
    return to_numpy(clf.weight, np.float64), to_numpy(clf.bias, np.float64)


def _bn_profile(ctx, idx: np.ndarray) -> list[dict]:
    """BatchNorm shift profile over the train+val images, cached beside the features (same pass computes both)."""
    from headstart import units
    from headstart.features import cache_key
    from headstart.shift import BatchNormShift
    include = np.zeros(len(ctx.ds), bool)
    include[idx] = True
    fold = "-bnfold" if ctx.cfg.fold_batchnorm else ""
    key = (cache_key(ctx.spec, ctx.size, ctx.ds.hashes, "bnshift-" + ctx.modality.feature_dtype(ctx) + fold)
           + hashlib.sha1(include.tobytes()).hexdigest()[:8])
    path = Path(ctx.cache_dir) / f"bnshift-{key}.json"
    if path.exists():
        return read_json(path)
    holder = {}

    def observe(model):
        holder["bn"] = BatchNormShift(model, include)
        return holder["bn"]
    units.features(ctx, observe=observe)
    profile = holder["bn"].profile()
    write_json(path, profile)
    return profile


def run_assess(cfg, backbones: list[str], progress=None, log=print) -> dict:
    """`headstart assess`: every backbone that loads, ranked by LogME; written to <out>/assessment.{json,md}."""
    from datetime import datetime

    from headstart.experiment import ensure_writable, prepare
    if not cfg.out:
        cfg.out = str(Path("runs") / f"{Path(cfg.data).resolve().name or 'data'}-assess-{datetime.now():%Y%m%d-%H%M%S}")
    out = ensure_writable(Path(cfg.out))
    rows, skipped = [], []
    for b in backbones:
        try:
            ctx = prepare(dataclasses.replace(cfg, backbone=b, strategies=["linear-probe"]), progress, log,
                          run_dir=out)
        except UserError as e:
            if len(backbones) == 1:
                raise
            skipped.append({"backbone": b, "reason": str(e)})
            log(f"{b}: skipped ({e})")
            continue
        rows.append(assess(ctx))
    if not rows:
        raise UserError("none of the backbones loaded: " + "; ".join(f"{s['backbone']}: {s['reason']}" for s in skipped))
    rows.sort(key=lambda r: -r["scores"]["logme"])
    result = {"data": cfg.data, "ranking": rows, "skipped": skipped, "ranked_by": "LogME (higher is better)"}
    write_json(out / "assessment.json", result)
    write_text(out / "assessment.md", render_assessment(result))
    return result


SCORE_HEADER = ["backbone", "LogME", "H-score", "LEEP", "NCE", "k-NN (frozen)", "k-NN (raw input)", "verdict",
                "seconds"]


def score_rows(ranking: list[dict]) -> list[list[str]]:
    fmt = lambda v, p=3: "—" if v is None else f"{v:.{p}f}"  # noqa: E731
    return [[r["backbone"], fmt(r["scores"]["logme"]), fmt(r["scores"]["hscore"], 2), fmt(r["scores"].get("leep")),
             fmt(r["scores"].get("nce")), f"{100 * r['scores']['knn']:.1f}%", f"{100 * r['scores']['knn_raw']:.1f}%",
             r["verdict"]["label"], f"{r['seconds']:.1f}"] for r in ranking]


def render_assessment(result: dict) -> str:
    from headstart.report import _table
    best = result["ranking"][0]
    v = best["verdict"]
    lines = [f"# Assessment of {result['data']}", "",
             f"**{best['backbone']}: {v['label']}.** Try `{v['try_first']}` first: {v['why']}.", "",
             _table(SCORE_HEADER, score_rows(result["ranking"])), "",
             "Ranked by LogME. The scores rank backbones for this task; they do not promise an accuracy. "
             "k-NN accuracies are 5-fold cross-validated on the train+val items (the test split is not used).", "",
             "Evidence:", *[f"- {e}" for e in v["evidence"]]]
    for s in result.get("skipped", []):
        lines.append(f"- {s['backbone']} not assessed: {s['reason']}")
    return "\n".join(lines) + "\n"
