"""Label efficiency: accuracy vs number of training labels, a learning curve per strategy, labels needed and saved.

    idx = nested_subset(train, labels, 0.25, seed)        # stratified; the 0.25 subset lies inside the 0.5 one
    fit = fit_power_law(n, acc)                           # error(n) = a * n^-b, least squares in log-log space
    need = labels_needed(points, target=0.9)              # with a bootstrap interval over seeds

Extrapolation is refused beyond EXTRAPOLATE x the largest label count measured: "not reached" instead of a guess.
"""
from __future__ import annotations

import math

import numpy as np

EXTRAPOLATE = 2.0
ERR_FLOOR = 1e-3        # error rates are floored here before taking logs (a perfect score is not infinite)


def nested_subset(train: list[int], labels: list[int], fraction: float, seed: int) -> list[int]:
    """`fraction` of each class's training items (at least one per class), from a per-(seed, class) permutation so
    that smaller fractions are subsets of larger ones."""
    out = []
    train = sorted(train)
    for c in sorted({labels[i] for i in train}):
        members = [i for i in train if labels[i] == c]
        order = np.random.default_rng([seed, c]).permutation(len(members))
        k = max(1, min(len(members), math.ceil(fraction * len(members) - 1e-9)))
        out += [members[j] for j in order[:k]]
    return sorted(out)


def fit_power_law(n, acc) -> tuple[float, float]:
    """(a, b) of error = a * n^-b fitted by least squares on log(error) vs log(n)."""
    n, err = np.asarray(n, float), np.clip(1 - np.asarray(acc, float), ERR_FLOOR, 1.0)
    if len(np.unique(n)) < 2:
        return float(err.mean()), 0.0
    slope, intercept = np.polyfit(np.log(n), np.log(err), 1)
    return float(np.exp(intercept)), float(-slope)


def solve_labels(a: float, b: float, target: float, n_min: float, n_max: float) -> float | None:
    """Labels at which the fitted curve reaches `target` accuracy, never below the smallest count measured
    (no extrapolation downwards); None when it does not within EXTRAPOLATE x the largest count."""
    err = max(1 - target, ERR_FLOOR)
    if a * n_min ** -b <= err:
        return float(n_min)
    if b <= 1e-6:
        return None
    log_n = math.log(a / err) / b                     # in logs: tiny slopes would overflow a float
    return float(math.exp(log_n)) if log_n <= math.log(EXTRAPOLATE * n_max) else None


def _needed(n: list[int], flat_n: list[int], acc: list[float], target: float) -> float | None:
    """Labels to reach `target`: from the fitted curve, but never more than the smallest label count whose measured
    mean already reached it (a noisy, flat curve can miss a target its own points hit)."""
    est = solve_labels(*fit_power_law(flat_n, acc), target, n[0], n[-1])
    means = {k: np.mean([a for m, a in zip(flat_n, acc) if m == k]) for k in n}
    hit = [k for k in n if means[k] >= target - 1e-12]
    if hit and (est is None or est > hit[0]):
        return float(hit[0])
    return est


def labels_needed(points: dict[int, list[float]], target: float, reps: int = 1000, seed: int = 0) -> dict:
    """points: labels -> accuracies (one per seed). Returns the estimate, a 95% bootstrap interval (seeds resampled
    within each label count) and how often the bootstrap fits reached the target."""
    n = sorted(points)
    n_max = max(n)
    flat_n = [k for k in n for _ in points[k]]
    a, b = fit_power_law(flat_n, [v for k in n for v in points[k]])
    est = _needed(n, flat_n, [v for k in n for v in points[k]], target)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(reps):
        acc = [v for k in n for v in rng.choice(points[k], len(points[k]))]
        boot.append(_needed(n, flat_n, acc, target))
    reached = [x for x in boot if x is not None]
    share = len(reached) / reps
    one_seed = max(len(v) for v in points.values()) < 2            # nothing to resample: no interval
    ci = ([float(np.percentile(reached, 2.5)), float(np.percentile(reached, 97.5))]
          if share >= 0.975 and not one_seed else None)
    return {"labels": est, "ci": ci, "reached": est is not None, "boot_reached_share": share, "fit": {"a": a, "b": b},
            "at_most": est == n[0], "n_max": n_max, "_boot": boot}


def labels_saved(transfer: dict, scratch: dict) -> dict:
    """scratch's labels minus transfer's, paired over the same bootstrap replicates. When scratch never reaches the
    target within the extrapolation limit, the saving is only bounded below."""
    if not transfer["reached"]:
        return {"saved": None, "ci": None, "note": "transfer does not reach the target either"}
    if not scratch["reached"]:
        return {"saved": None, "ci": None, "at_least": EXTRAPOLATE * scratch["n_max"] - transfer["labels"],
                "note": f"scratch does not reach the target within x{EXTRAPOLATE:g} of the labels measured"}
    pairs = [s - t for t, s in zip(transfer["_boot"], scratch["_boot"]) if t is not None and s is not None]
    ci = ([float(np.percentile(pairs, 2.5)), float(np.percentile(pairs, 97.5))]
          if transfer["ci"] and scratch["ci"] and len(pairs) >= 0.975 * len(transfer["_boot"]) else None)
    return {"saved": scratch["labels"] - transfer["labels"], "ci": ci}


def money(labels: float | None, cost_per_label: list[float]) -> list[float] | None:
    return None if labels is None else [labels * c for c in cost_per_label]


def public(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.startswith("_")}
