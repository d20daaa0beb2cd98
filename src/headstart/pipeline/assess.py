"""Before training: will transfer help here? Scores, domain shift and two predictions from one frozen feature pass.

    a = assess(ctx)                       # one backbone, on the run's train+val items (never the test split)
    v = verdict(a)                        # v["vs_classic"], v["vs_scratch"]: label + evidence; what to try first

Two questions, each with its own evidence:
- transfer vs the classic baseline (pixels / TF-IDF / MFCC + logistic regression): a k-NN classifier on the frozen
  features against the same k-NN on the raw inputs; thresholds calibrated in docs/assessment.md;
- transfer vs the same network trained from scratch: the labels per class (from-scratch networks need orders of
  magnitude more; measured here on every shared set), unless the raw inputs are so simple that they already
  separate the classes far better than the pretrained features (8x8 digits: scratch tied transfer at 16 per
  class). Thresholds fitted on nine shared-set tasks and seven controlled variants; a second batch of five
  variants is held out (docs/assessment.md, benchmarks/threshold_fit.py).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from headstart.pipeline.state import RunContext
from headstart.core.errors import DamagedFile
from headstart.core.io import read_json, write_json
from headstart.core.findings import Check, CheckRow
from headstart.core.records import Difference
from headstart.core.run_results import RunResults
from headstart.modalities import MODALITIES
from headstart.models.bnshift import BatchNormShift, summarize_profile
from headstart.models.device import to_numpy
from headstart.models.factory import load_source_model
from headstart.pipeline.frozen import features
from headstart.stats.transferability import hscore, knn_accuracy, leep, logme, nce, source_probs
from headstart.training.features import cache_key
from headstart.training.strategies import BASELINES, FINETUNE_FIRST, NETWORK_BASELINE, PROBE_FIRST, TRANSFER

# Calibrated in docs/assessment.md on 9 tasks: frozen-feature k-NN minus raw-input k-NN accuracy (cross-validated)
GAIN_HELPS = 0.05          # at or above (+6.7 to +50 measured): transfer won clearly in every such task
GAIN_LITTLE = 0.0          # at or below (-34 to -17 for images): transfer lost to, or tied, the no-pretraining arm
PROBE_FIRST_KNN = 0.85     # frozen features already separate the classes: a linear probe first
FEW_LABELS = 20            # median training labels per class below this: fine-tuning overfits, probe first
SCRATCH_FEW = 1000         # median labels per class below which scratch stayed far below transfer on every shared
                           # set (hymenoptera ~100: <=63% vs 94%; FSDD 216: 91% vs 100%; TREC ~700: 79% vs 95%)
RAW_EASY = 0.85            # raw-input k-NN at or above, RAW_LEAD or more ahead of the frozen features: inputs
RAW_LEAD = -0.10           # simple enough for scratch to learn from few labels (digits at 16 and 40 per class:
                           # raw 89% / 95%, gain -15.5 / -16.4; scratch tied / beat transfer)
PRACTICAL = 0.02           # a measured gain below 2 points of the decision metric counts as "competitive", even
                           # when significant (+1.3 [0.5, 2.1] on a text set is no practical win over scratch)
TOO_WIDE = 0.20            # a paired CI wider than 20 points that includes 0 cannot check a call (66 far-domain
                           # test images gave +8 [-3, +18]): reported as too few test items, not scored
RAW_ALL_MAX = 20_000       # above this many train+val items the k-NN's raw inputs are computed for its sample only
EARLY_SHIFT = 0.3          # BatchNorm KL in the first third of layers above this: low-level statistics differ
                           # (ImageNet-like photos: 0.05-0.06; 96 px digits: 0.38)


def knn_sample(y: np.ndarray, above: int = RAW_ALL_MAX, size: int = 2000, seed: int = 0) -> np.ndarray:
    """Positions of the items the k-NN scores use: all of them up to `above` (the k-NN samples 2000 itself, from
    raw features computed over every item, as it always has), else the same stratified sample of `size` that
    knn_accuracy draws, chosen first, so the raw inputs (TF-IDF, pixels) are computed for it alone."""
    if len(y) <= above:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    keep, _ = train_test_split(np.arange(len(y)), train_size=size, random_state=seed,
                               stratify=y if counts.min() >= 2 else None)
    return np.sort(keep)


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
    # k-NN in the run's decision metric, its vote rebalanced like every arm when the run rebalances
    scoring, adjust = ctx.decision.metric, ctx.decision.rebalance != "none"
    knn_on = knn_sample(y)          # large data: the raw inputs of the k-NN's own sample only (linear cost)
    scores = {"logme": logme(feats, y), "hscore": hscore(feats, y),
              "knn": knn_accuracy(feats[knn_on], y[knn_on], scoring=scoring, adjust=adjust),
              "knn_raw": knn_accuracy(ctx.modality.raw_features(ctx.inputs, idx[knn_on]), y[knn_on], scoring=scoring,
                                      adjust=adjust)}
    head = _source_head(ctx)
    if head is not None:
        theta = source_probs(feats, *head)
        scores.update(leep=leep(theta, y), nce=nce(theta.argmax(1), y))
    shift.update(ctx.modality.shift_evidence(ctx.inputs, idx))
    per_class = np.bincount(np.asarray(ctx.ds.labels)[ctx.split["train"]], minlength=len(ctx.ds.classes))
    out = {"backbone": ctx.cfg.backbone, "modality": ctx.modality.name, "n_items": int(len(idx)), "knn_scoring": scoring,
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
        label = VS_CLASSIC[0]
    elif gain <= GAIN_LITTLE and can_hide is None:
        label = VS_CLASSIC[2]
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
        first, why = FINETUNE_FIRST, hidden[1]
    elif s["knn"] >= PROBE_FIRST_KNN or few:
        first = PROBE_FIRST
        why = ("the frozen features already separate the classes; fine-tune only if the probe falls short"
               if s["knn"] >= PROBE_FIRST_KNN else
               f"with a median of {a['train_per_class_median']:.0f} labels per class fine-tuning tends to overfit")
    else:
        first, why = FINETUNE_FIRST, mod.finetune_advice(early)
    scratch = vs_scratch(a)
    return {"label": f"vs scratch: {scratch['label']}; vs classic: {label}", "gain": gain,
            "evidence": scratch["evidence"] + evidence, "try_first": first, "why": why,
            "vs_classic": {"label": label, "evidence": evidence[:1 + bool(hidden)]}, "vs_scratch": scratch}


VS_CLASSIC = ("transfer likely beats the classic baseline", "uncertain",
              "the classic baseline may match or beat transfer")
VS_SCRATCH = ("transfer likely beats scratch", "uncertain", "scratch may be competitive")


def vs_scratch(a: dict) -> dict:
    """Transfer vs the same architecture from random weights: labels per class first, then how simple the inputs
    are (raw-input k-NN) and whether the pretrained features beat them."""
    s, n = a["scores"], a.get("train_per_class_median")
    gain = s["knn"] - s["knn_raw"]
    if n is None:
        return {"label": VS_SCRATCH[1], "evidence": ["labels per class unknown"]}
    if n >= SCRATCH_FEW:
        label = VS_SCRATCH[2] if gain <= GAIN_LITTLE else VS_SCRATCH[1]
        why = (f"a median of {n:.0f} training labels per class: enough for a network trained from random weights to "
               "catch up given a long schedule (He et al. 2019)" + (", and the pretrained features do not beat the raw "
                                                                    "inputs" if gain <= GAIN_LITTLE else ""))
    elif s["knn_raw"] >= RAW_EASY and gain <= RAW_LEAD:
        label = VS_SCRATCH[2]
        why = (f"a median of {n:.0f} labels per class would favour transfer, but the raw inputs already separate the "
               f"classes (k-NN {100 * s['knn_raw']:.1f}%, {100 * -gain:.0f} points above the frozen features): "
               "inputs this simple let scratch learn from few labels (8x8 digits: scratch tied transfer at 16 per "
               "class and beat it at 40)")
    else:
        label = VS_SCRATCH[0]
        why = (f"a median of {n:.0f} training labels per class: a same-architecture network from random weights "
               "stays far below a pretrained one at this size (shared sets: hymenoptera ~100 per class, scratch "
               "<= 63% vs 94%; FSDD 216, 91% vs 100%; TREC ~700, 79% vs 95%), even when the domain is far")
    return {"label": label, "evidence": [why]}


def predicted_vs_measured(a: dict, results: RunResults) -> Check:
    """Did each prediction hold? The best transfer arm (picked on validation) against scratch and against the
    classic baseline, each on test with its paired CI; plus whether the arm to try first was the best one."""
    results = RunResults.of(results)
    ok = results.ok
    t = results.best_arm(TRANSFER)
    v = a["verdict"]
    rows = {}
    for key, base, words in (("vs_scratch", NETWORK_BASELINE, VS_SCRATCH),
                             ("vs_classic", next((b for b in BASELINES if b != NETWORK_BASELINE), ""), VS_CLASSIC)):
        pred = (v.get(key) or {}).get("label")
        d = results.paired_differences.get(f"{t} - {base}")
        if pred is None or d is None:
            rows[key] = CheckRow(predicted=pred, baseline=base)
            continue
        measured = measured_words(d)
        agrees = (None if pred == "uncertain" or measured.startswith("too few") else
                  (measured == "transfer helped") == (pred == words[0]))
        rows[key] = CheckRow(predicted=pred, baseline=base, measured=measured, difference=d.difference, ci=d.ci,
                             agrees=agrees, bounded=base == NETWORK_BASELINE and base in ok and ok[base].bounded)
    return Check(best_transfer=t, rows=rows, try_first=v["try_first"],
                 try_first_agrees=t == v["try_first"] if all(s in ok for s in (PROBE_FIRST, FINETUNE_FIRST))
                 else None)


def measured_words(d: Difference) -> str:
    """A paired difference in words, with a practical margin: helped / lost only by at least PRACTICAL points and
    beyond noise; a CI wider than TOO_WIDE that cannot even tell the sign checks nothing."""
    d = Difference.of(d)
    if d.ci[1] - d.ci[0] > TOO_WIDE and d.ci[0] <= 0 <= d.ci[1]:
        return f"too few test items to check (95% CI {100 * (d.ci[1] - d.ci[0]):.0f} points wide)"
    if d.significant and abs(d.difference) >= PRACTICAL:
        return "transfer helped" if d.difference > 0 else "transfer lost"
    return f"within {100 * PRACTICAL:.0f} points or noise"


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
    key = (cache_key(ctx.spec, ctx.size, ctx.ds.hashes, "bnshift-" + ctx.modality.feature_dtype(ctx.inputs) + fold)
           + hashlib.sha1(include.tobytes()).hexdigest()[:8])
    path = Path(ctx.cache_dir) / f"bnshift-{key}.json"
    if path.exists():
        try:
            return read_json(path)
        except DamagedFile:
            pass                        # a damaged cache entry: measured again
    holder = {}

    def observe(model):
        holder["bn"] = BatchNormShift(model, include)
        return holder["bn"]
    features(ctx, observe=observe)
    profile = holder["bn"].profile()
    write_json(path, profile)
    return profile
