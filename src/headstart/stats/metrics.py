"""The decision metric every choice runs on, class weights, collapse flags and the binary operating point.

    name, why = choose_metric(train_labels, n_classes)        # "balanced_accuracy" when imbalanced beyond 3:1
    score(name, y, pred, k)                                   # accuracy | balanced_accuracy | macro_f1
    mode = rebalance_mode("auto", train_labels, k)            # "logit-adjust" when imbalanced and a class scarce
    w = class_weights(train_labels, k)                        # n / (k n_c), scikit-learn's "balanced"
    shift = log_prior(train_labels, k)                        # logit adjustment: logits - log prior at prediction
    flag = collapse(y, pred, classes)                         # classes never recalled, one class for (nearly) all
    t, why = operating_threshold(y_val, p_pos, name, pos)     # binary: the threshold on p(positive), on validation

Why 3:1. A model that ignores the minority already scores 75% accuracy at 3:1 and 93% at 14:1, so accuracy stops
rewarding the rare class there; the balanced shared sets sit near 1:1 and keep accuracy, the imbalanced variants
measured (benchmarks/README.md, "Imbalanced classes") are 10:1 to 35:1. Ratios between 1.5:1 and 10:1 were not
swept. The ratio is the largest class's training count over the smallest's.
Balanced accuracy (mean per-class recall; Brodersen et al. 2010) is the default there: it is 50% for any
one-class answer, has a per-item form (so validation ties stay paired) and reads like accuracy.
"""
from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}
SCARCE = 50                # auto rebalancing also needs a class with fewer training items than this
REBALANCE = {"none": f"no rebalancing (no class is scarce: {SCARCE}+ training items each; or --rebalance none)",
             "logit-adjust": "logit-adjusted losses in every arm (Menon et al. 2021)",
             "class-weights": "class-weighted losses in every arm"}
IMBALANCE_RATIO = 3.0       # largest / smallest class count in the training pool above which data is imbalanced
MIN_TUNE = 10               # binary: a threshold is tuned on validation only with this many items of each class
ONE_CLASS_SHARE = 0.95      # predicting one class for this share of items (while it is not that common) collapses


def imbalance_ratio(labels, k: int) -> float:
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=k)
    counts = counts[counts > 0]
    return float(counts.max() / counts.min()) if len(counts) else 1.0


def choose_metric(labels, k: int, requested: str = "") -> tuple[str, str]:
    """The decision metric and why: the user's, else balanced accuracy beyond IMBALANCE_RATIO, else accuracy."""
    ratio = imbalance_ratio(labels, k)
    if requested:
        return requested, f"chosen with --metric (largest/smallest class {ratio:.1f}:1 in training)"
    if ratio > IMBALANCE_RATIO:
        return "balanced_accuracy", (f"the training classes are imbalanced ({ratio:.1f}:1, above {IMBALANCE_RATIO:.0f}:1):"
                                     " accuracy would reward ignoring the rare classes")
    return "accuracy", f"the training classes are balanced enough ({ratio:.1f}:1, at most {IMBALANCE_RATIO:.0f}:1)"


def rebalance_mode(setting: str, labels, k: int) -> str:
    """--rebalance auto: logit adjustment when the training labels are imbalanced beyond IMBALANCE_RATIO and some
    class is scarce (fewer than SCARCE training items). A rare class with enough examples is learnt unaided: on the
    whole TREC-6 set (14.5:1, 69 ABBR questions in training) fine-tuning recalled 8 of 9 test ABBR questions without
    rebalancing and reached 94.1% balanced accuracy; logit adjustment cost it 2.3 points (91.8%). With 6-12 items
    of a class it gained 8-35 points (benchmarks/README.md, "Imbalanced classes").

    Logit adjustment (Menon et al. 2021): fit as usual with the class prior added to the logits (for a logistic
    regression with an unpenalised intercept that is exactly the plain fit with log prior subtracted from the
    intercept), predict with the logits alone: the balanced-error-consistent rule. Class weights (n / (k n_c))
    are the alternative. Measured on the shared ants/bees split with 12 (6) training bees, the linear probe's test
    balanced accuracy across the C grid: 86-92% (76-89%) with logit adjustment, 80-87% (66-73%) with class weights:
    weights let 9 minority points steer a 1280-dimensional boundary; the adjustment only moves it."""
    if setting != "auto":
        return setting
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=k)
    scarce = counts[counts > 0].min() < SCARCE if (counts > 0).any() else False
    return "logit-adjust" if imbalance_ratio(labels, k) > IMBALANCE_RATIO and scarce else "none"


def log_prior(labels, k: int) -> np.ndarray:
    """log of each class's share of `labels` (0 for an absent class: it is never predicted anyway)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=k).astype(np.float64)
    return np.where(counts > 0, np.log(np.maximum(counts, 1) / max(counts.sum(), 1)), 0.0)


def class_weights(labels, k: int) -> np.ndarray:
    """n / (k n_c) per class (scikit-learn's class_weight="balanced"); a class absent from `labels` gets 0."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=k).astype(np.float64)
    present = counts > 0
    w = np.zeros(k)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def logit_adjusted(p: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """Post-hoc logit adjustment of class probabilities: softmax(log p - log prior) (for a logistic regression with
    an unpenalised intercept, the same as fitting the adjusted loss)."""
    return softmax(np.log(np.maximum(p, 1e-12)) - log_prior)


def confusion(y, pred, k: int) -> np.ndarray:
    y, pred = np.asarray(y, dtype=int), np.asarray(pred, dtype=int)
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def from_confusion(name: str, cm) -> float:
    """The metric from a confusion matrix (rows: true class). Balanced accuracy and macro-F1 average over the
    classes present in the truth, as scikit-learn's balanced_accuracy_score does."""
    cm = np.asarray(cm, dtype=np.float64)
    n_true, tp = cm.sum(1), np.diag(cm)
    if name == "accuracy":
        return float(tp.sum() / max(cm.sum(), 1.0))
    present = n_true > 0
    if name == "balanced_accuracy":
        return float((tp[present] / n_true[present]).mean()) if present.any() else 0.0
    if name == "macro_f1":
        denom = n_true + cm.sum(0)
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), 0.0)
        return float(f1[present].mean()) if present.any() else 0.0
    raise ValueError(f"unknown metric {name!r}")


def score(name: str, y, pred, k: int) -> float:
    return from_confusion(name, confusion(y, pred, k))


def item_weights(name: str, y, k: int) -> np.ndarray | None:
    """Per-item weights whose mean of (weight x correct) is the metric (accuracy: 1; balanced accuracy:
    n / (k_present n_c)), so validation ties can be judged paired per item; None for macro-F1 (not per item)."""
    y = np.asarray(y, dtype=int)
    if name == "accuracy":
        return np.ones(len(y))
    if name == "balanced_accuracy":
        return class_weights(y, k)[y]
    return None


def positive_class(train_labels, k: int) -> int | None:
    """Binary tasks: the rarer class in training (the one that usually matters); class 1 on a tie. None otherwise."""
    if k != 2:
        return None
    counts = np.bincount(np.asarray(train_labels, dtype=int), minlength=2)
    return 0 if counts[0] < counts[1] else 1


def predict(probs, threshold: float | None = None, pos: int | None = None) -> np.ndarray:
    """Labels from class probabilities: argmax, or for a binary task with a threshold, pos iff p(pos) >= it."""
    probs = np.asarray(probs)
    if threshold is None or pos is None:
        return probs.argmax(1)
    return np.where(probs[:, pos] >= threshold, pos, 1 - pos)


def operating_threshold(y_val, p_pos, name: str, pos: int) -> tuple[float, str]:
    """The threshold on p(positive) that maximises the metric on validation (ties: the one nearest 0.5), or 0.5
    when validation has fewer than MIN_TUNE items of either class (a threshold tuned on 3 positives is noise)."""
    y_val, p_pos = np.asarray(y_val, dtype=int), np.asarray(p_pos, dtype=np.float64)
    n_pos, n_neg = int((y_val == pos).sum()), int((y_val != pos).sum())
    if min(n_pos, n_neg) < MIN_TUNE:
        return 0.5, (f"0.5: validation holds {min(n_pos, n_neg)} item(s) of its smaller class, fewer than {MIN_TUNE} "
                     "to tune a threshold on")
    u = np.unique(p_pos)
    cands = np.unique(np.concatenate([[0.5], (u[1:] + u[:-1]) / 2 if len(u) > 1 else []]))
    vals = [score(name, y_val, np.where(p_pos >= t, pos, 1 - pos), 2) for t in cands]
    best = max(vals)
    t = min((c for c, v in zip(cands, vals) if v >= best - 1e-12), key=lambda c: abs(c - 0.5))
    return float(t), f"{t:.3f}: maximises validation {LABELS[name]} ({100 * best:.1f}%)"


def collapse(y, preds: list, classes: list[str]) -> dict:
    """Does a model ignore a class? `preds`: predicted labels per seed. ignored: classes present in y that no seed
    ever recalls; one_class: the class predicted for at least ONE_CLASS_SHARE of items (when fewer truly are);
    collapsed: either, where an ignored class has at least 2 items (one missed item is not a pattern)."""
    y, k = np.asarray(y, dtype=int), len(classes)
    cms = [confusion(y, p, k) for p in preds]
    n_true = cms[0].sum(1)
    hit = np.sum([np.diag(cm) for cm in cms], axis=0)
    ignored = [int(c) for c in range(k) if n_true[c] > 0 and hit[c] == 0]
    share = np.mean([np.bincount(np.asarray(p, dtype=int), minlength=k) / max(len(y), 1) for p in preds], axis=0)
    dom = int(share.argmax())
    one_class = bool((n_true > 0).sum() > 1 and share[dom] >= ONE_CLASS_SHARE
                     and n_true[dom] / max(len(y), 1) < ONE_CLASS_SHARE)
    return {"collapsed": one_class or any(n_true[c] >= 2 for c in ignored),
            "ignored": [{"class": classes[c], "items": int(n_true[c])} for c in ignored],
            "one_class": classes[dom] if one_class else None, "one_class_share": float(share[dom])}


def collapse_words(flag: dict, where: str = "test") -> str:
    """'predicts ants for 100% of test items; never recalls bees (0 of 3)' (empty when not collapsed)."""
    if not flag or not flag.get("collapsed"):
        return ""
    parts = ([f"predicts {flag['one_class']} for {100 * flag['one_class_share']:.0f}% of {where} items"]
             if flag.get("one_class") else [])
    parts += [f"never recalls {g['class']} (0 of {g['items']})" for g in flag.get("ignored", [])][:3]
    return "; ".join(parts)
