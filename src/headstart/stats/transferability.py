"""Transferability scores of frozen features for a labelled target task (higher = more transferable).

    logme(F, y)            # LogME, You et al. ICML 2021: mean per-class log evidence of a Bayesian linear model
    hscore(F, y)           # H-score, Bao et al. 2019: tr(cov(F)^-1 cov(E[F|y])), shrinkage-regularised
    leep(theta, y)         # LEEP, Nguyen et al. 2020: needs the source classifier's probabilities theta (n, Z):
                           # source_probs(F, W, b)
    nce(z, y)              # NCE, Tran et al. 2019: -H(Y | Z), z = the source classifier's predicted class
    knn_accuracy(F, y)     # cross-validated k-NN accuracy: the plain, interpretable number

They rank backbones for one task; none of them is an accuracy forecast (LogME and H-score have no absolute scale).
"""
from __future__ import annotations

import numpy as np

from headstart.stats.metrics import score, softmax

GRAM_ABOVE = 20_000     # above this many items LogME and H-score work from D x D sums over row blocks: the SVD and
                        # float64 copies of an 80,000 x 1,280 matrix took ~3 GiB, the peak of a 100k-image run
BLOCK = 8192            # rows per block of those sums


def logme(f: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-5) -> float:
    """Mean over classes of the maximised log evidence per sample, of y_k (one-hot column) ~ F m + noise.

    Evidence maximisation by the fixed-point updates of MacKay (alpha: prior precision, beta: noise precision),
    computed in the SVD basis of F so each class costs O(min(n, D)) per iteration."""
    y = np.asarray(y)
    n, d = f.shape
    if n > GRAM_ABOVE:
        return _logme_gram(f, y, max_iter, tol)
    f = np.asarray(f, dtype=np.float64)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s ** 2                                    # eigenvalues of F^T F (the rest, up to D, are 0)
    ts = [(y == k).astype(np.float64) for k in np.unique(y)]
    return float(np.mean([_log_evidence(n, d, sigma, u.T @ t, float(t @ t), max_iter, tol) for t in ts]))


def _logme_gram(f: np.ndarray, y: np.ndarray, max_iter: int, tol: float) -> float:
    """LogME from F^T F and F^T T (T: the one-hot labels), summed over row blocks: the same evidence without the
    N x D float64 copy and its SVD. The singular basis is F V / s, so t's coordinates in it are V^T F^T t / s;
    directions with s = 0 hold none of t (all of t there counts in `rest`, as in the SVD form)."""
    n, d = f.shape
    classes = np.unique(y)
    gram, ft = np.zeros((d, d)), np.zeros((d, len(classes)))
    for start in range(0, n, BLOCK):
        b = np.asarray(f[start: start + BLOCK], dtype=np.float64)
        gram += b.T @ b
        ft += b.T @ (y[start: start + BLOCK, None] == classes[None, :])
    sigma, v = np.linalg.eigh(gram)
    live = sigma > sigma.max() * 1e-12
    sigma = np.where(live, sigma, 0.0)
    x = np.where(live[:, None], v.T @ ft, 0.0) / np.sqrt(np.where(live, sigma, 1.0))[:, None]
    counts = (y[:, None] == classes[None, :]).sum(0)
    return float(np.mean([_log_evidence(n, d, sigma, x[:, k], float(counts[k]), max_iter, tol)
                          for k in range(len(classes))]))


def _log_evidence(n: int, d: int, sigma: np.ndarray, x: np.ndarray, tt: float, max_iter: int, tol: float) -> float:
    """One class's maximised log evidence per item: sigma, the eigenvalues of F^T F; x, the class indicator t in
    F's singular basis; tt = t.t."""
    x2, rest = x ** 2, max(0.0, tt - float(x @ x))     # rest: part of t outside F's column space
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
        m2 = float((beta ** 2 * sigma * x2 / (alpha + beta * sigma) ** 2).sum())
        res2 = float((alpha ** 2 * x2 / (alpha + beta * sigma) ** 2).sum()) + rest
        # clamped: with D >= n a class can be fitted exactly and the optimum runs off to beta -> infinity
        new_alpha = float(np.clip(gamma / max(m2, 1e-300), 1e-10, 1e10))
        new_beta = float(np.clip((n - gamma) / max(res2, 1e-300), 1e-10, 1e10))
        done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    m2 = float((beta ** 2 * sigma * x2 / (alpha + beta * sigma) ** 2).sum())
    res2 = float((alpha ** 2 * x2 / (alpha + beta * sigma) ** 2).sum()) + rest
    logdet = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
    ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
          - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2)
    return float(ev / n)


def hscore(f: np.ndarray, y: np.ndarray, shrinkage: float | None = None) -> float:
    """tr(cov(F)^-1 cov(E[F | y])). With few samples per dimension the feature covariance is singular, so it is
    shrunk towards a scaled identity (Ledoit-Wolf coefficient unless `shrinkage` is given; 0 = the plain formula)."""
    y = np.asarray(y)
    if len(f) > GRAM_ABOVE:
        cov, shrunk, cov_g = _hscore_sums(f, y)
        shrinkage = shrunk if shrinkage is None else shrinkage
    else:
        f = np.asarray(f, dtype=np.float64)
        f = f - f.mean(0)
        cov = f.T @ f / len(f)
        if shrinkage is None:
            from sklearn.covariance import ledoit_wolf_shrinkage
            shrinkage = float(ledoit_wolf_shrinkage(f, assume_centered=True))
        g = np.zeros_like(f)
        for k in np.unique(y):
            g[y == k] = f[y == k].mean(0)
        cov_g = g.T @ g / len(g)
    mu = np.trace(cov) / cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * mu * np.eye(cov.shape[0])
    return float(np.trace(np.linalg.pinv(cov, hermitian=True) @ cov_g))


def _hscore_sums(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """H-score's covariance, Ledoit-Wolf coefficient (scikit-learn's formula: from X^T X and (X^2)^T X^2 of the
    centred features) and class-mean covariance, summed over row blocks (no N x D float64 copy)."""
    n, d = f.shape
    mean = np.zeros(d)
    for start in range(0, n, BLOCK):
        mean += np.asarray(f[start: start + BLOCK], dtype=np.float64).sum(0)
    mean /= n
    classes = np.unique(y)
    xtx, x2tx2, sums = np.zeros((d, d)), np.zeros((d, d)), np.zeros((len(classes), d))
    for start in range(0, n, BLOCK):
        b = np.asarray(f[start: start + BLOCK], dtype=np.float64) - mean
        xtx += b.T @ b
        b2 = b ** 2
        x2tx2 += b2.T @ b2
        sums += (y[start: start + BLOCK, None] == classes[None, :]).T @ b
    trace = np.diag(xtx) / n
    mu = trace.sum() / d
    delta_ = float((xtx ** 2).sum()) / n ** 2
    beta = 1.0 / (d * n) * (float(x2tx2.sum()) / n - delta_)
    delta = (delta_ - 2.0 * mu * trace.sum() + d * mu ** 2) / d
    beta = min(beta, delta)
    shrinkage = 0.0 if d == 1 or beta == 0 else beta / delta
    counts = (y[:, None] == classes[None, :]).sum(0)
    means = sums / counts[:, None]
    return xtx / n, float(shrinkage), (means.T * counts) @ means / n


def _joint(theta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Empirical joint P(y, z) (classes of y in sorted order) from per-sample source distributions theta."""
    classes = np.unique(y)
    return np.stack([theta[y == k].sum(0) for k in classes]) / len(y)


def leep(theta: np.ndarray, y: np.ndarray) -> float:
    """Mean log-likelihood of the target labels under the 'expected empirical predictor' sum_z P(y|z) theta_z."""
    theta = np.asarray(theta, dtype=np.float64)
    y = np.asarray(y)
    joint = _joint(theta, y)
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)     # P(y | z)
    row = np.searchsorted(np.unique(y), y)
    p = np.concatenate([(theta[i: i + BLOCK] * cond[row[i: i + BLOCK]]).sum(1)       # rows in blocks: no N x Z
                        for i in range(0, len(y), BLOCK)])                           # temporaries
    return float(np.log(np.maximum(p, 1e-300)).mean())


def source_probs(f: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The source classifier's probabilities softmax(F W^T + b) (float64), a block of rows at a time: at 80,000
    items x 1,000 ImageNet classes each whole-matrix temporary is 0.6 GiB."""
    out = np.empty((len(f), len(bias)))
    for i in range(0, len(f), BLOCK):
        out[i: i + BLOCK] = softmax(f[i: i + BLOCK] @ weight.T + bias)
    return out


def nce(z: np.ndarray, y: np.ndarray) -> float:
    """Negative conditional entropy -H(Y | Z) of the target labels given the source's hard predictions."""
    z = np.asarray(z)
    zs = np.unique(z)
    onehot = (z[:, None] == zs[None, :]).astype(np.float64)
    joint = _joint(onehot, np.asarray(y))
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / np.broadcast_to(pz, joint.shape)[nz])).sum())


def knn_accuracy(f: np.ndarray, y: np.ndarray, seed: int = 0, k: int = 5, metric: str = "cosine",
                 max_items: int = 2000, scoring: str = "accuracy", adjust: bool = False) -> float:
    """Stratified 5-fold cross-validated k-NN accuracy (distance-weighted, cosine by default), on a stratified
    sample of at most `max_items` (the estimate's standard error at 2000 items is about 1 point).
    scoring: the run's decision metric (accuracy | balanced_accuracy | macro_f1); adjust: imbalanced classes, so
    the neighbours' vote is divided by the class prior before the argmax (the logit adjustment every arm gets):
    a plain 5-NN vote never names a class of 6 items among 130, and would score the features as useless."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict, cross_val_score, train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    y = np.asarray(y)
    if len(y) > max_items:
        counts = np.bincount(np.unique(y, return_inverse=True)[1])
        idx, _ = train_test_split(np.arange(len(y)), train_size=max_items, random_state=seed,
                                  stratify=y if counts.min() >= 2 else None)
        f, y = f[np.sort(idx)], y[np.sort(idx)]
    smallest = np.bincount(np.unique(y, return_inverse=True)[1]).min()
    folds = (StratifiedKFold(min(5, smallest), shuffle=True, random_state=seed) if smallest >= 2
             else KFold(min(5, len(y)), shuffle=True, random_state=seed))
    k = max(1, min(k, len(y) * 4 // 5 - 1))
    clf = KNeighborsClassifier(n_neighbors=k, weights="distance", metric=metric)
    if not adjust:
        scorer = {"macro_f1": "f1_macro"}.get(scoring, scoring)
        return float(cross_val_score(clf, f, y, cv=folds, scoring=scorer).mean())
    classes, yi = np.unique(y, return_inverse=True)
    proba = cross_val_predict(clf, f, yi, cv=folds, method="predict_proba")
    prior = np.bincount(yi, minlength=len(classes)) / len(yi)
    pred = np.argmax(np.log(proba + 1e-9) - np.log(prior), axis=1)
    return score(scoring, yi, pred, len(classes))
