"""Test-set metrics with confidence intervals, and paired transfer-vs-scratch differences.

    m = metrics(y_true, probs_by_seed, classes)          # accuracy, macro-F1, per-class recall, confusion, CIs
    d = paired_difference(y_true, probs_a, probs_b)      # accuracy(a) - accuracy(b), paired bootstrap CI

`probs_by_seed` is a list (one per seed) of (N, C) probability arrays; the point estimate averages the per-seed
metric. Accuracy gets a Wilson score interval (valid at 0% and 100%, where a bootstrap collapses to [100, 100]);
macro-F1 and paired differences resample test items, keeping the seeds together (pairing by item).
"""
from __future__ import annotations

import numpy as np

from headstart.stats.metrics import collapse, score, softmax  # noqa: F401  (softmax: imported from here)


def _macro_f1(y, pred, n_classes):
    from sklearn.metrics import f1_score
    return float(f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def bootstrap_ci(stat, n: int, reps: int, seed: int = 0, level: float = 0.95) -> list[float]:
    rng = np.random.default_rng(seed)
    vals = np.array([stat(rng.integers(0, n, n)) for _ in range(reps)])
    a = (1 - level) / 2
    return [float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))]


def validation_noise(top: float, n_val: int) -> float:
    """Two standard errors of the difference of two accuracies near `top`, each on n_val items (Agresti-Coull
    adjusted, so 100% on a small set still has noise): below it, two arms or backbones are tied on validation."""
    p = (top * n_val + 2) / (n_val + 4)
    return 2 * float(np.sqrt(2 * p * (1 - p) / max(n_val, 1)))


def paired_noise(a_correct, b_correct) -> float:
    """Two standard errors of the mean per-item difference between two models' correctness (0/1, or the share of
    seeds right) on the same validation items: the paired counterpart of validation_noise. Models that agree on
    most items are separated by fewer disagreements (k one-sided disagreements: separated from k = 5, like a sign
    test), models that disagree often need more."""
    d = np.asarray(a_correct, dtype=np.float64) - np.asarray(b_correct, dtype=np.float64)
    return 2 * float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 1.0


def validation_ties(val: dict[str, dict], best: str, n_val: int) -> tuple[list[str], dict[str, float], bool]:
    """The candidates tied with `best` on validation: (names, the noise each was judged with, paired?). Paired over
    the same items when every candidate has per-item credits ("val_credit": the decision metric's per-item form,
    seeds averaged; "val_correct" in runs from before the decision metric): tied when the mean difference is within
    paired_noise. Otherwise (macro-F1, or older runs) two scores on n_val items are compared with
    validation_noise."""
    key = "val_credit" if all(v.get("val_credit") for v in val.values()) else "val_correct"
    if all(v.get(key) for v in val.values()):
        ref = val[best][key]
        noise = {s: paired_noise(ref, v[key]) for s, v in val.items()}
        gap = {s: float(np.mean(ref) - np.mean(v[key])) for s, v in val.items()}
        return [s for s in val if gap[s] <= noise[s] + 1e-12], noise, True
    sc = {s: v.get("val_score", v.get("val_acc")) for s, v in val.items()}
    top = sc[best]
    noise = validation_noise(top, n_val)
    return [s for s in val if sc[s] >= top - noise], {s: noise for s in val}, False


def wilson_ci(correct: float, n: int, level: float = 0.95) -> list[float]:
    """Wilson score interval for a proportion (correct may be fractional: the seed-averaged count)."""
    from scipy.stats import norm
    if n <= 0:
        return [0.0, 1.0]
    z = float(norm.ppf(1 - (1 - level) / 2))
    p = correct / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [float(max(0.0, mid - half)), float(min(1.0, mid + half))]


def metrics(y_true, probs_list: list[np.ndarray], classes: list[str], reps: int = 2000, metric: str = "accuracy",
            preds: list[np.ndarray] | None = None, positive: int | None = None) -> dict:
    """Test metrics, averaged over seeds. preds: each seed's predicted labels (default: argmax; a binary operating
    point gives others); metric: the run's decision metric (score, score_ci); positive: a binary task's positive
    class (precision, recall, ROC AUC and PR AUC for it)."""
    from sklearn.metrics import confusion_matrix, recall_score

    y = np.asarray(y_true)
    k = len(classes)
    preds = [np.asarray(p) for p in preds] if preds is not None else [p.argmax(1) for p in probs_list]
    per_item = np.mean([p == y for p in preds], axis=0)
    f1 = lambda idx: float(np.mean([_macro_f1(y[idx], p[idx], k) for p in preds]))  # noqa: E731
    sc = lambda idx: float(np.mean([score(metric, y[idx], p[idx], k) for p in preds]))  # noqa: E731
    recall = np.mean([recall_score(y, p, labels=list(range(k)), average=None, zero_division=0) for p in preds], 0)
    n_c = np.bincount(y, minlength=k)
    acc, acc_ci = float(per_item.mean()), wilson_ci(float(per_item.sum()), len(y))
    out = {
        "n_test": int(len(y)),
        "seeds": len(probs_list),
        "accuracy": acc,
        "accuracy_ci": acc_ci,
        "accuracy_per_seed": [float((p == y).mean()) for p in preds],
        "macro_f1": f1(np.arange(len(y))),
        "macro_f1_ci": bootstrap_ci(f1, len(y), max(200, reps // 10), seed=1),
        "balanced_accuracy": float(np.mean([score("balanced_accuracy", y, p, k) for p in preds])),
        "metric": metric,
        "score": acc if metric == "accuracy" else sc(np.arange(len(y))),
        "score_ci": acc_ci if metric == "accuracy" else bootstrap_ci(sc, len(y), max(200, reps // 10), seed=3),
        "per_class_recall": {c: float(r) for c, r in zip(classes, recall)},
        "per_class_recall_ci": {c: wilson_ci(float(r * n), int(n)) for c, r, n in zip(classes, recall, n_c) if n},
        "per_class_n": {c: int(n) for c, n in zip(classes, n_c)},
        "confusion": confusion_matrix(y, preds[0], labels=list(range(k))).tolist(),
        "collapse": collapse(y, preds, classes),
    }
    if positive is not None:
        out["binary"] = binary_metrics(y, probs_list, preds, positive, classes)
    return out


def binary_metrics(y, probs_list, preds, pos: int, classes: list[str]) -> dict:
    """The positive class's precision and recall (at the operating point), ROC AUC and PR AUC (average precision),
    each averaged over seeds; the AUCs are None when the test split holds only one class."""
    from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score
    y = np.asarray(y)
    both = len(np.unique(y)) == 2
    mean = lambda f: float(np.mean([f(p) for p in preds]))  # noqa: E731
    return {"positive": classes[pos],
            "precision": mean(lambda p: precision_score(y == pos, p == pos, zero_division=0)),
            "recall": mean(lambda p: recall_score(y == pos, p == pos, zero_division=0)),
            "roc_auc": float(np.mean([roc_auc_score(y == pos, pr[:, pos]) for pr in probs_list])) if both else None,
            "pr_auc": (float(np.mean([average_precision_score(y == pos, pr[:, pos]) for pr in probs_list]))
                       if both else None)}


def paired_difference(y_true, probs_a: list[np.ndarray], probs_b: list[np.ndarray], reps: int = 2000,
                      metric: str = "accuracy", preds_a=None, preds_b=None) -> dict:
    """metric(a) - metric(b) on the same test items, with a paired bootstrap 95% CI (items resampled, seeds kept
    together). Accuracy is a mean of per-item differences; other metrics are recomputed on every resample."""
    y = np.asarray(y_true)
    pa = preds_a if preds_a is not None else [p.argmax(1) for p in probs_a]
    pb = preds_b if preds_b is not None else [p.argmax(1) for p in probs_b]
    if metric == "accuracy":
        diff = np.mean([p == y for p in pa], axis=0) - np.mean([p == y for p in pb], axis=0)
        point, ci = float(diff.mean()), bootstrap_ci(lambda idx: diff[idx].mean(), len(y), reps, seed=2)
    else:
        k = int(max(y.max(), *(p.max() for p in pa + pb))) + 1
        d = lambda idx: (np.mean([score(metric, y[idx], p[idx], k) for p in pa])  # noqa: E731
                         - np.mean([score(metric, y[idx], p[idx], k) for p in pb]))
        point, ci = float(d(np.arange(len(y)))), bootstrap_ci(d, len(y), reps, seed=2)
    return {"difference": point, "ci": ci, "significant": bool(ci[0] > 0 or ci[1] < 0), "metric": metric}
