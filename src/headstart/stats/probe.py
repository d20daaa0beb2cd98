"""Linear probe: logistic regression on frozen, cached features; C chosen on the validation split.

    probe = fit_probe(feats, labels, split, cs=[0.1, 1, 10])
    probe.weight, probe.bias   # torch-ready head in raw feature space (standardisation folded in)
    probe.sweep                # one row per C: train/val loss and accuracy (written as metrics.csv)

The chosen C is refit on train + val for the deployed probe (as GridSearchCV's refit does); the validation numbers
reported and used for choosing a strategy are those of the train-only fit, and LP-FT starts from the train-only
head, so fine-tuning's early stopping never sees a head that was fit on validation data. The test split is never
touched before evaluation.
Imbalanced data (rebalance, stats/metrics.rebalance_mode): "logit-adjust" fits as usual and subtracts the log class
prior from the bias (the logit-adjusted loss's solution for a logistic regression, whose intercept is not
penalised); "class-weights" counts every item with its class's weight n / (k n_c) in the fits. Either way the
validation log-loss that picks C is class-weighted, so the choice rewards the rare classes too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import warnings

import numpy as np

from headstart.stats.metrics import class_weights, log_prior


@dataclass
class Probe:
    C: float = 0.0
    weight: np.ndarray | None = None    # (classes, dim): the deployed head (refit on train + val)
    bias: np.ndarray | None = None      # (classes,)
    train_weight: np.ndarray | None = None   # train-only fit: LP-FT starts from it, so val stays unseen
    train_bias: np.ndarray | None = None
    sweep: list[dict] = field(default_factory=list)
    chosen_by: str = "validation log-loss; refit on train+val"
    not_converged: list = field(default_factory=list)    # values of C whose fit hit max_iter
    val_loss: float = 0.0
    val_acc: float = 0.0

    def logits(self, feats: np.ndarray) -> np.ndarray:
        return feats @ self.weight.T + self.bias


def fit_head(x, y, C, n_classes, seed, clf=None, class_weight=None):
    """Standardised logistic regression folded into a raw-feature head. Passing the previous C's `clf` warm-starts
    the solver from its solution (the C path is swept from strong to weak regularisation)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    # standardise, but never blow up a (near-)constant feature: folded into the head, 1/std would turn it into
    # a weight of 1e30 that any later perturbation of that feature (dropout, fine-tuning) turns into chaos
    scale = np.maximum(x.std(0), 0.01 * np.median(x.std(0)) + 1e-12)
    clf = clf.set_params(C=C) if clf is not None else LogisticRegression(C=C, max_iter=3000, random_state=seed,
                                                                         warm_start=True)
    with warnings.catch_warnings():          # said once, in the probe's policy (not_converged_at_C), not per fit
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((x - mean) / scale, y, sample_weight=None if class_weight is None else class_weight[y])
    coef, icpt = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: two-logit softmax equal to the sigmoid
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    full_w = np.zeros((n_classes, x.shape[1]))
    full_b = np.full(n_classes, -1e4)       # a class absent from training data can never be predicted
    full_w[clf.classes_] = coef / scale
    full_b[clf.classes_] = icpt - (coef / scale) @ mean
    return full_w.astype(np.float32), full_b.astype(np.float32), clf


def _loss_acc(w, b, x, y, class_weight=None):
    z = x @ w.T + b
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    sw = np.ones(len(y)) if class_weight is None else class_weight[y]
    return float(-(sw * logp[np.arange(len(y)), y]).sum() / sw.sum()), float((z.argmax(1) == y).mean())


SWEEP_MAX = 10_000      # training items above which the C sweep fits on a stratified sample of this many


def sweep_sample(y: np.ndarray, tr: np.ndarray, seed: int = 0, limit: int | None = None) -> np.ndarray:
    """The training indices the C sweep fits on: all of them up to `limit`, else a stratified sample of `limit`
    (every class kept). The chosen C is then fitted once on every training item, so the cost of a sweep stays
    bounded while the reported model is trained on everything (benchmarks/scale.py)."""
    limit = SWEEP_MAX if limit is None else limit
    if len(tr) <= limit:
        return tr
    from sklearn.model_selection import train_test_split
    counts = np.bincount(y[tr])
    keep, _ = train_test_split(tr, train_size=limit, random_state=seed,
                               stratify=y[tr] if counts[counts > 0].min() >= 2 else None)
    return np.sort(keep)


def thin_validation_folds(y: np.ndarray, tr, va, n_classes: int, below: int, seed: int) -> list | None:
    """Stratified k-fold (k = min(5, smallest class count)) splits of train + val, as index arrays, when validation
    holds fewer than `below` items of a class present in the data; None otherwise (or when a class has < 2 items)."""
    if not below:
        return None
    both = np.concatenate([tr, va]).astype(int)
    counts = np.bincount(y[both], minlength=n_classes)
    in_val = np.bincount(y[va], minlength=n_classes)
    present = counts > 0
    if in_val[present].min() >= below or counts[present].min() < 2:
        return None
    from sklearn.model_selection import StratifiedKFold
    cv = StratifiedKFold(int(min(5, counts[present].min())), shuffle=True, random_state=seed)
    return [(both[a], both[b]) for a, b in cv.split(both, y[both])]


def fit_probe(feats: np.ndarray, labels, split: dict, cs: list[float], n_classes: int, seed: int = 0,
              refit_on_val: bool = True, rebalance: str = "none", cv_below: int = 0) -> Probe:
    """rebalance: "none" | "logit-adjust" | "class-weights" (imbalanced classes; priors and weights from the items
    each fit sees). cv_below: when validation holds fewer items than this of some class, C is chosen by stratified
    k-fold cross-validation on train + val instead (3 validation bees decide nothing: on the ants/bees split with 12
    training bees, C by validation gave 86% test balanced accuracy, C by 5-fold CV 91%); the validation numbers
    reported stay those of the train-only fit."""
    y = np.asarray(labels)
    tr, va = np.asarray(split["train"]), np.asarray(split["val"])
    cw = class_weights(y[tr], n_classes) if rebalance != "none" else None      # the validation loss's weights

    def fit(idx, C, clf=None):
        fit_w = class_weights(y[idx], n_classes) if rebalance == "class-weights" else None
        w, b, clf = fit_head(feats[idx], y[idx], C, n_classes, seed, clf, fit_w)
        if rebalance == "logit-adjust":
            b = (b - log_prior(y[idx], n_classes)).astype(np.float32)
        return w, b, clf
    probe = Probe()
    folds = thin_validation_folds(y, tr, va, n_classes, cv_below, seed)
    if folds:
        probe.chosen_by = f"{len(folds)}-fold cross-validation on train+val (thin validation); refit on train+val"

    def cv_loss(C):                         # the class-weighted log-loss of each fold's held-out items, pooled
        total = 0.0
        for a, b in folds:
            w, bias, _ = fit(a, C)
            total += _loss_acc(w, bias, feats[b], y[b], class_weights(y[a], n_classes) if cw is not None else None)[0] \
                * len(b)
        return total / sum(len(b) for _, b in folds)
    best, clf = None, None
    sweep_on = sweep_sample(y, tr, seed)
    if len(sweep_on) < len(tr):
        probe.chosen_by = probe.chosen_by.replace("validation log-loss", f"validation log-loss of fits on a "
                                                  f"stratified {len(sweep_on):,} of {len(tr):,} training items; "
                                                  "the chosen C fitted on all")
    for C in sorted(cs):
        w, b, clf = fit(sweep_on, C, clf)
        if int(np.max(clf.n_iter_)) >= clf.max_iter:
            probe.not_converged.append(C)
        tl, ta = _loss_acc(w, b, feats[tr], y[tr], cw)
        vl, vacc = _loss_acc(w, b, feats[va], y[va], cw)
        row = {"C": C, "train_loss": tl, "train_acc": ta, "val_loss": vl, "val_acc": vacc}
        if folds:
            row["cv_loss"] = cv_loss(C)
        probe.sweep.append(row)
        key = row.get("cv_loss", vl)
        if best is None or key < best[0]:
            best = (key, vl, vacc, C, w, b)
    _, probe.val_loss, probe.val_acc, probe.C, probe.train_weight, probe.train_bias = best
    if len(sweep_on) < len(tr):                 # the chosen C on every training item
        probe.train_weight, probe.train_bias, _ = fit(tr, probe.C, clf)
        probe.val_loss, probe.val_acc = _loss_acc(probe.train_weight, probe.train_bias, feats[va], y[va], cw)
    probe.weight, probe.bias = probe.train_weight, probe.train_bias
    if refit_on_val:
        probe.weight, probe.bias, _ = fit(np.concatenate([tr, va]).astype(int), probe.C)
    return probe
