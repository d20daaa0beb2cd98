"""Racing the scratch baseline against transfer: stop it once even an optimistic extrapolation of its validation
accuracy curve cannot reach the best transfer arm (learning-curve extrapolation, after Domhan et al. 2015).

    b = optimistic_final([0.52, 0.55, 0.57, 0.58], budget=20)      # dict: bound, fits, points
    d = decide([0.52, 0.55, 0.57, 0.58], budget=20, rival=0.98, margin=0.05)   # Decision(stop=True, ...)

The bound is deliberately optimistic, so that racing errs towards training on:
- four curve families are fitted to the epochs seen so far: two saturating ones (a - b t^-c and a - b e^-ct),
  a logarithmic one that keeps growing, and the recent trend carried on (straight, while the curve accelerates,
  e.g. scratch leaving a plateau; slowing as 1/t once it decelerates);
- the bound is the highest of their predictions at the full budget, plus twice the residual spread of the
  best-fitting family (the noise around the curve), and never below the best accuracy already seen;
- scratch stops only when that bound is more than `margin` below the rival, so a scratch arm that is close to or
  ahead of transfer is never stopped (those are the runs whose verdict matters most).
Nothing here reads the test split: the curve and the rival are validation accuracies.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

MIN_POINTS = 4          # three-parameter fits need at least four epochs


def _pow3(t, a, b, c):
    return a - b * np.power(t, -c)


def _exp3(t, a, b, c):
    return a - b * np.exp(-c * t)


def _fit(fn, t, y, p0, bounds):
    from scipy.optimize import curve_fit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(fn, t, y, p0=p0, bounds=bounds, maxfev=5000)
        return lambda x: float(fn(x, *p))
    except (RuntimeError, ValueError):
        return None


def optimistic_final(accs: list[float], budget: int) -> dict:
    """Optimistic extrapolation of validation accuracy (epochs 1..k observed) to epoch `budget`."""
    y = np.asarray(accs, dtype=float)
    t = np.arange(1, len(y) + 1, dtype=float)
    fits = {
        "pow3": _fit(_pow3, t, y, (min(1.0, y.max() + 0.05), 0.3, 0.5), ([0, -2, 1e-3], [1.0, 2, 5])),
        "exp3": _fit(_exp3, t, y, (min(1.0, y.max() + 0.05), 0.3, 0.3), ([0, -2, 1e-3], [1.0, 2, 5])),
    }
    slope, icpt = np.polyfit(np.log(t), y, 1)
    fits["log"] = lambda x, s=slope, c=icpt: float(c + s * np.log(x))
    fits["recent-trend"] = _recent_trend(t, y)
    preds, resid = {}, []
    for name, f in fits.items():
        if f is None:
            continue
        preds[name] = f(float(budget))
        resid.append(np.std(y - np.array([f(x) for x in t])))
    spread = 2 * float(min(resid)) if resid else 0.0     # the noise around the curve that describes it best
    bound = min(1.0, max(max(preds.values()) + spread, float(y.max())))
    return {"bound": bound, "fits": {k: round(v, 4) for k, v in preds.items()}, "spread": spread}


def _recent_trend(t: np.ndarray, y: np.ndarray):
    """The straight line through the last max(3, k/2) epochs, carried on: undamped while the curve accelerates
    (recent slope above the earlier one: scratch leaving a plateau), else slowing as 1/t (logarithmic growth)."""
    n = max(3, len(y) // 2)
    s_recent, c_recent = np.polyfit(t[-n:], y[-n:], 1)
    s_early = np.polyfit(t[: len(y) - n + 1], y[: len(y) - n + 1], 1)[0] if len(y) - n + 1 >= 2 else -np.inf
    k, y_k = t[-1], c_recent + s_recent * t[-1]
    if s_recent > s_early:
        return lambda x: float(y_k + s_recent * (x - k))
    return lambda x: float(y_k + max(s_recent, 0.0) * k * np.log(x / k))


@dataclass
class Decision:
    stop: bool
    epoch: int                 # epochs seen when deciding
    budget: int
    bound: float | None        # optimistic final validation accuracy (None: too few epochs to fit)
    rival: str | None
    rival_val_acc: float | None
    margin: float
    fits: dict
    metric: str = "accuracy"   # what the curve measures: the run's decision metric, in words

    def message(self) -> str:
        if not self.stop:
            return ""
        return (f"scratch stopped at epoch {self.epoch} of {self.budget}: even its optimistic extrapolation "
                f"({100 * self.bound:.1f}% validation {self.metric}) cannot reach {self.rival} "
                f"({100 * self.rival_val_acc:.1f}%)")

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message()}


def decide(accs: list[float], budget: int, rival_acc: float | None, margin: float, rival: str | None = None,
           min_points: int = MIN_POINTS, chance: float = 0.0, n_val: int = 0, metric: str = "accuracy") -> Decision:
    """Stop scratch now? Only with a rival and a bound clearly below it, fitted on the right epochs:
    - a curve still at chance level (within 2 binomial standard deviations over n_val items: a flat start says
      nothing of when scratch takes off; digits-20 left a 4-epoch plateau to end above transfer) waits half its
      budget, then what it did is the evidence (hymenoptera's scratch never left 0.51-0.63 in 20 epochs);
    - a curve that left chance is fitted from the epoch it left, once it has min_points epochs there: the plateau
      says nothing of the climb's shape, and fitted with it a sigmoid take-off reads as a slow line (digits-20 at
      224 px: 0.10 0.10 0.12 0.15 0.25 0.30 0.28 looked hopeless at epoch 7; a seed with the same start ended at
      0.90 against the probe's 0.95)."""
    k = len(accs)
    noise = 2 * (max(chance * (1 - chance), 0.0) / n_val) ** 0.5 if n_val else 0.02
    left = next((i for i, a in enumerate(accs) if a > chance + noise), None)
    if left is None:                                   # at chance so far: judged only after half the budget
        ready, start = k >= budget / 2, 0
    else:
        ready, start = k - left >= max(min_points, 1), left
    if rival_acc is None or k < max(min_points, 1) or k >= budget or not ready:
        return Decision(False, k, budget, None, rival, rival_acc, margin, {}, metric)
    b = optimistic_final(accs[start:], budget - start)
    stop = b["bound"] < rival_acc - margin
    return Decision(stop, k, budget, b["bound"], rival, rival_acc, margin, b["fits"], metric)
