"""Which given labels to check again: confident learning (cleanlab's `find_label_issues`, Northcutt et al. 2021) on
out-of-fold probabilities of the frozen-feature probe.

    probs = out_of_fold_probs(features, labels, C=1.0)         # each item predicted by a probe that never saw it
    flagged = rank_issues(labels, probs)                       # item indices, most suspect first

The probe is the run's (standardised features, logistic regression with the C the run chose), refitted in
stratified folds so that no item's probability comes from a model trained on its own label: an in-sample probe
memorises a wrong label and hides it. cleanlab then estimates the joint of given and true labels from those
probabilities and flags the items it would prune, ranked by the probability of their given label (self-confidence).
"""
from __future__ import annotations

import numpy as np

from headstart.stats.metrics import softmax
from headstart.stats.probe import fit_head

FOLDS = 5
MIN_PER_CLASS = 2         # a class with fewer items cannot be held out of a fold and still be learned


def out_of_fold_probs(x: np.ndarray, y: np.ndarray, C: float = 1.0, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """(n, k) probabilities, each row from the run's probe (stats/probe.fit_head: standardised features, logistic
    regression at C) fitted on the other folds. k = max label + 1; a class a fold never saw gets probability 0."""
    from sklearn.model_selection import StratifiedKFold
    y = np.asarray(y)
    k = int(y.max()) + 1
    counts = np.bincount(y, minlength=k)
    cv = StratifiedKFold(n_splits=max(2, int(min(folds, counts[counts > 0].min()))), shuffle=True, random_state=seed)
    out = np.zeros((len(y), k))
    for fit_idx, held in cv.split(x, y):
        w, b, _ = fit_head(x[fit_idx], y[fit_idx], C, k, seed)
        out[held] = softmax(x[held] @ w.T + b)
    return out


def too_few(y: np.ndarray, classes: list[str]) -> str | None:
    """Why the search cannot run on these labels, or None."""
    counts = np.bincount(np.asarray(y), minlength=len(classes))
    thin = [c for c, n in zip(classes, counts) if n < MIN_PER_CLASS]
    if len(classes) < 2:
        return "one class only"
    if thin:
        return (f"class(es) {', '.join(thin[:3])} have fewer than {MIN_PER_CLASS} train+val items: out-of-fold "
                "probabilities need each class in every fold's training part")
    return None


def rank_issues(y: np.ndarray, probs: np.ndarray) -> list[int]:
    """Indices of the items whose given label cleanlab flags, most suspect (lowest self-confidence) first."""
    from cleanlab.filter import find_label_issues
    return [int(i) for i in find_label_issues(labels=np.asarray(y), pred_probs=probs,
                                              return_indices_ranked_by="self_confidence")]
