"""Before training: will transfer help here? Scores, domain shift and a verdict from one frozen feature pass.

    a = assess(ctx)                       # one backbone, on the run's train+val items (never the test split)
    v = verdict(a)                        # likely helps / uncertain / likely little gain, and what to try first

The verdict compares a k-NN classifier on the frozen features with the same k-NN on the raw inputs (pixels,
TF-IDF, MFCC statistics): the pretrained representation's head start over what scratch starts from. Thresholds
and the strategy hint come from the calibration runs in docs/assessment.md.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from headstart.core.context import RunContext
from headstart.core.io import read_json, write_json
from headstart.core.results import best_arm
from headstart.modalities import MODALITIES
from headstart.models.bnshift import BatchNormShift, summarize_profile
from headstart.models.device import to_numpy
from headstart.models.factory import load_source_model
from headstart.pipeline.frozen import features
from headstart.stats.evaluate import softmax
from headstart.stats.transferability import hscore, knn_accuracy, leep, logme, nce
from headstart.training.features import cache_key
from headstart.training.strategies import BASELINES, TRANSFER

# Calibrated in docs/assessment.md on 9 tasks: frozen-feature k-NN minus raw-input k-NN accuracy (cross-validated)
GAIN_HELPS = 0.05          # at or above (+6.7 to +50 measured): transfer won clearly in every such task
GAIN_LITTLE = 0.0          # at or below (-34 to -17 for images): transfer lost to, or tied, the no-pretraining arm
PROBE_FIRST_KNN = 0.85     # frozen features already separate the classes: a linear probe first
FEW_LABELS = 20            # median training labels per class below this: fine-tuning overfits, probe first
EARLY_SHIFT = 0.3          # BatchNorm KL in the first third of layers above this: low-level statistics differ
                           # (ImageNet-like photos: 0.05-0.06; 96 px digits: 0.38)


def assess(ctx: RunContext) -> dict:
    """Transferability and domain shift for ctx's backbone on the train+val items."""
    t0 = time.perf_counter()
    idx = np.asarray(ctx.split["train"] + ctx.split["val"])
    y = np.asarray(ctx.ds.labels)[idx]
    shift: dict = {}
    if ctx.modality.batchnorm_shift:
        profile = _bn_profile(ctx, idx)
        shift = {"batchnorm": summarize_profile(profile), "profile": profile}
    feats = features(ctx)[idx]
    t_feats = time.perf_counter() - t0
    scores = {"logme": logme(feats, y), "hscore": hscore(feats, y), "knn": knn_accuracy(feats, y),
              "knn_raw": knn_accuracy(ctx.modality.raw_features(ctx, idx), y)}
    head = _source_head(ctx)
    if head is not None:
        theta = softmax(feats @ head[0].T + head[1])
        scores.update(leep=leep(theta, y), nce=nce(theta.argmax(1), y))
    shift.update(ctx.modality.shift_evidence(ctx, idx))
    per_class = np.bincount(np.asarray(ctx.ds.labels)[ctx.split["train"]], minlength=len(ctx.ds.classes))
    out = {"backbone": ctx.cfg.backbone, "modality": ctx.modality.name, "n_items": int(len(idx)),
           "train_per_class_median": float(np.median(per_class)), "scores": scores, "shift": shift,
           "features_seconds": t_feats, "seconds": time.perf_counter() - t0,
           "features_cached": bool(ctx.timings.features_cached)}
    out["verdict"] = verdict(out, ctx.modality)
    return out


def verdict(a: dict, modality=None) -> dict:
    """likely helps / uncertain / likely little gain over scratch, with the evidence and the strategy to try first."""
    mod = modality or MODALITIES[a["modality"]]()
    s = a["scores"]
    gain = s["knn"] - s["knn_raw"]
    evidence = [f"k-NN on frozen features {100 * s['knn']:.1f}% vs on raw inputs {100 * s['knn_raw']:.1f}% "
                f"({100 * gain:+.1f} pts)"]
    can_hide = mod.hidden_gain()                  # frozen features may hide fine-tuning's gain (text)
    hidden = can_hide if gain < GAIN_HELPS else None
    if gain >= GAIN_HELPS:
        label = "likely helps"
    elif gain <= GAIN_LITTLE and can_hide is None:
        label = "likely little gain over scratch"
    else:
        label = "uncertain"
    if hidden:
        evidence.append(hidden[0])
    bn = a.get("shift", {}).get("batchnorm", {})
    early = bn.get("early", 0.0) > EARLY_SHIFT
    if bn:
        evidence.append(f"BatchNorm shift (KL) early {bn['early']:.2f} / middle {bn['middle']:.2f} / late "
                        f"{bn['late']:.2f}: " + ("low-level statistics differ from the source data" if early
                                                 else "low-level statistics close to the source data"))
    evidence += mod.evidence_lines(a.get("shift", {}))
    few = a.get("train_per_class_median", 1e9) < FEW_LABELS
    if hidden:
        first, why = "finetune", hidden[1]
    elif s["knn"] >= PROBE_FIRST_KNN or few:
        first = "linear-probe"
        why = ("the frozen features already separate the classes; fine-tune only if the probe falls short"
               if s["knn"] >= PROBE_FIRST_KNN else
               f"with a median of {a['train_per_class_median']:.0f} labels per class fine-tuning tends to overfit")
    else:
        first, why = "finetune", mod.finetune_advice(early)
    return {"label": label, "gain": gain, "evidence": evidence, "try_first": first, "why": why}


def predicted_vs_measured(a: dict, results: dict) -> dict:
    """Did the verdict hold? Best transfer arm vs best from-scratch arm (each picked on validation), on test."""
    ok = {s: m for s, m in results["strategies"].items() if "failed" not in m}
    t, b = best_arm(results, TRANSFER), best_arm(results, BASELINES)
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
            "try_first_agrees": t == out["try_first"] if all(s in ok for s in TRANSFER) else None}



def _source_head(ctx: RunContext):
    """(W, b) of the backbone's pretrained classifier (e.g. 1000 ImageNet classes), or None if it has none."""
    if not ctx.spec.source_classes:
        return None
    model = load_source_model(ctx.cfg.backbone)[0]
    if model is None:
        return None
    clf = model.get_classifier()
    return to_numpy(clf.weight, np.float64), to_numpy(clf.bias, np.float64)


def _bn_profile(ctx: RunContext, idx: np.ndarray) -> list[dict]:
    """BatchNorm shift profile over the train+val images, cached beside the features (same pass computes both)."""
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
    features(ctx, observe=observe)
    profile = holder["bn"].profile()
    write_json(path, profile)
    return profile
