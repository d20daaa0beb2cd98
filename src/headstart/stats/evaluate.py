"""Test-set metrics with confidence intervals, and paired transfer-vs-scratch differences.

    m = metrics(y_true, probs_by_seed, classes)          # accuracy, macro-F1, per-class recall, confusion, CIs
    d = paired_difference(y_true, probs_a, probs_b)      # accuracy(a) - accuracy(b), paired bootstrap CI

`probs_by_seed` is a list (one per seed) of (N, C) probability arrays; the point estimate averages the per-seed
metric. Accuracy gets a Wilson score interval (valid at 0% and 100%, where a bootstrap collapses to [100, 100]);
macro-F1 and paired differences resample test items, keeping the seeds together (pairing by item).
"""
from __future__ import annotations

import numpy as np


def _acc_per_item(y, probs_list):
    return np.mean([(p.argmax(1) == y) for p in probs_list], axis=0)   # (N,) share of seeds right per item


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
    the same items when every candidate has "val_correct" (per-item correctness, seeds averaged): tied when the mean
    difference is within paired_noise. Otherwise (runs from before the per-item record) two accuracies on n_val
    items are compared with validation_noise."""
    if all(v.get("val_correct") for v in val.values()):
        ref = val[best]["val_correct"]
        noise = {s: paired_noise(ref, v["val_correct"]) for s, v in val.items()}
        gap = {s: float(np.mean(ref) - np.mean(v["val_correct"])) for s, v in val.items()}
        return [s for s in val if gap[s] <= noise[s] + 1e-12], noise, True
    top = val[best]["val_acc"]
    noise = validation_noise(top, n_val)
    return [s for s in val if val[s]["val_acc"] >= top - noise], {s: noise for s in val}, False


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


def metrics(y_true, probs_list: list[np.ndarray], classes: list[str], reps: int = 2000) -> dict:
    from sklearn.metrics import confusion_matrix, recall_score

    y = np.asarray(y_true)
    k = len(classes)
    preds = [p.argmax(1) for p in probs_list]
    per_item = _acc_per_item(y, probs_list)
    f1 = lambda idx: float(np.mean([_macro_f1(y[idx], p[idx], k) for p in preds]))  # noqa: E731
    recall = np.mean([recall_score(y, p, labels=list(range(k)), average=None, zero_division=0) for p in preds], 0)
    return {
        "n_test": int(len(y)),
        "seeds": len(probs_list),
        "accuracy": float(per_item.mean()),
        "accuracy_ci": wilson_ci(float(per_item.sum()), len(y)),
        "accuracy_per_seed": [float((p == y).mean()) for p in preds],
        "macro_f1": f1(np.arange(len(y))),
        "macro_f1_ci": bootstrap_ci(f1, len(y), max(200, reps // 10), seed=1),
        "per_class_recall": {c: float(r) for c, r in zip(classes, recall)},
        "confusion": confusion_matrix(y, preds[0], labels=list(range(k))).tolist(),
    }


def paired_difference(y_true, probs_a: list[np.ndarray], probs_b: list[np.ndarray], reps: int = 2000) -> dict:
    """Accuracy(a) - accuracy(b) on the same test items, with a paired bootstrap 95% CI."""
    y = np.asarray(y_true)
    diff = _acc_per_item(y, probs_a) - _acc_per_item(y, probs_b)
    ci = bootstrap_ci(lambda idx: diff[idx].mean(), len(y), reps, seed=2)
    return {"difference": float(diff.mean()), "ci": ci, "significant": bool(ci[0] > 0 or ci[1] < 0)}


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
