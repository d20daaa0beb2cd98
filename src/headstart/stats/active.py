"""Which unlabelled items to label next: uncertainty of the current model, coverage of the feature space, and a
share of random picks (numpy only; pipeline/suggest.py feeds it the run's frozen features and probe).

    u = uncertainty(probs, "margin")                       # 1 - (p1 - p2), or entropy / log(classes); in [0, 1]
    picks = select(feats_u, probs_u, feats_l, n=50)        # [Pick], in the order to label them

The rule: the most uncertain items (a candidate pool of `pool_factor` x n, at least n) are chosen greedily by
uncertainty x coverage, where coverage is the cosine distance to the nearest labelled-or-already-chosen item divided
by the pool's median such distance and capped at 1. So each pick is uncertain AND in a part of the feature space no
label covers yet: ten near-copies of one confusing item cost one label, not ten (k-center greedy, Sener & Savarese
2018, weighted by margin as in Zhdanov 2019); the cap keeps far-off outliers from winning on distance alone (without
it the rule fell 2-3 points behind pure margin sampling on TREC; benchmarks/README.md). The last `random_share` of
the picks are drawn at random from the rest, which keeps the labelled set representative of the pool (a pure
uncertainty rule can starve whole regions the model is wrongly sure about).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("margin", "entropy")


@dataclass
class Pick:
    index: int                 # row of the unlabelled pool
    score: float               # uncertainty x capped coverage when it was picked (random picks: the same product)
    uncertainty: float         # in [0, 1]
    gap: float                 # cosine distance to the nearest labelled or earlier-picked item, when picked
    why: str                   # "uncertain" | "covers a gap" | "uncertain, covers a gap" | "random" | "uncertain,
                               # unlike earlier picks" (not among the n most uncertain, but far from those picked)


def uncertainty(probs: np.ndarray, kind: str = "margin") -> np.ndarray:
    """margin: 1 - (top probability - runner-up); entropy: Shannon entropy / log(classes). 0 = sure, 1 = a tie."""
    p = np.asarray(probs, dtype=np.float64)
    if kind == "margin":
        top2 = -np.sort(-p, axis=1)[:, :2]
        return 1.0 - (top2[:, 0] - top2[:, 1])
    if kind == "entropy":
        h = -(p * np.log(np.clip(p, 1e-12, 1))).sum(1)
        return h / np.log(p.shape[1])
    raise ValueError(f"uncertainty kind {kind!r}; choose {', '.join(KINDS)}")


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, plus one column that gives all-zero rows (a dead ReLU network on odd inputs) one
    shared direction of their own: identical to each other, unlike every other item."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norm < 1e-12
    return np.hstack([np.where(zero, 0.0, x / np.maximum(norm, 1e-12)), zero.astype(np.float64)])


def nearest_distance(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For every row of a, the cosine distance to its nearest row of b (inputs already unit-normalised)."""
    if len(b) == 0:
        return np.ones(len(a))
    out = np.empty(len(a))
    for s in range(0, len(a), chunk):
        out[s: s + chunk] = 1.0 - (a[s: s + chunk] @ b.T).max(1)
    return np.clip(out, 0.0, 2.0)


def select(feats_u: np.ndarray, probs_u: np.ndarray, feats_l: np.ndarray, n: int, random_share: float = 0.2,
           kind: str = "margin", pool_factor: int = 10, seed: int = 0, cap: float | None = 1.0) -> list[Pick]:
    """n picks from the unlabelled pool (fewer if it is smaller), in labelling order. cap: the coverage term is
    distance / (the pool's median distance to the labelled items), capped there, so being far earns no more
    than being typically far: outliers do not win on distance alone (None: the raw distance)."""
    m = len(feats_u)
    n = min(n, m)
    if n <= 0:
        return []
    u = uncertainty(probs_u, kind)
    fu, fl = _unit(feats_u), _unit(feats_l)
    gap = nearest_distance(fu, fl)
    scale = float(np.median(gap)) or 1.0        # "covers a gap": farther than the typical unlabelled item
    n_random = int(round(random_share * n)) if n > 1 else 0
    n_rule = n - n_random
    by_u = np.argsort(-u, kind="stable")
    top_u = set(by_u[:n_rule].tolist())
    pool = by_u[: min(m, max(n_rule, pool_factor * n_rule))]
    d = gap[pool].copy()
    cover = (lambda x: np.minimum(x / scale, cap)) if cap else (lambda x: x)  # noqa: E731
    taken = np.zeros(m, bool)
    picks = []
    for _ in range(n_rule):
        score = u[pool] * cover(d)
        score[taken[pool]] = -1.0
        j = int(np.argmax(score))
        i = int(pool[j])
        far = gap[i] > scale
        why = ", ".join([w for w, on in (("uncertain", i in top_u), ("covers a gap", far)) if on]) or \
            "uncertain, unlike earlier picks"
        picks.append(Pick(i, float(score[j]), float(u[i]), float(d[j]), why))
        taken[i] = True
        d = np.minimum(d, 1.0 - fu[pool] @ fu[i])        # the pick now covers its neighbourhood
    rest = np.flatnonzero(~taken)
    if n_random:
        chosen = np.random.default_rng(seed).choice(rest, size=min(n_random, len(rest)), replace=False)
        picked = fu[[p.index for p in picks]] if picks else np.zeros((0, fu.shape[1]))
        g = nearest_distance(fu[chosen], np.concatenate([fl, picked]))
        picks += [Pick(int(i), float(u[i] * cover(gi)), float(u[i]), float(gi), "random") for i, gi in zip(chosen, g)]
    return picks
