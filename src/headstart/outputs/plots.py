"""The report's figures (matplotlib, headless): learning curves, loss curves per arm, confusion matrix.

    paths = make_plots(results, run_dir)      # {"curve": "plots/curve.png", "losses": ..., "confusion": ...}

PNG files under <run>/plots, linked from report.md and embedded into report.html.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from headstart.core.io import atomic_write_bytes
from headstart.core.results import unit_result
from headstart.core.run_results import RunResults
from headstart.training.strategies import STRATEGIES


def _color(s: str) -> str | None:
    return STRATEGIES[s].color if s in STRATEGIES else None


def make_plots(results: RunResults, run_dir: Path) -> dict:
    results = RunResults.of(results)
    import matplotlib
    matplotlib.use("Agg")
    out = Path(run_dir) / "plots"
    out.mkdir(exist_ok=True)
    made = {}
    for name, fn in (("curve", _curve), ("losses", _losses), ("confusion", _confusion)):
        fig = fn(results, Path(run_dir))
        if fig is not None:
            import matplotlib.pyplot as plt
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            atomic_write_bytes(out / f"{name}.png", buf.getvalue())
            made[name] = f"plots/{name}.png"
    return made


def _curve(results: RunResults, run_dir: Path):
    import matplotlib.pyplot as plt
    c = results.curve
    if not c or not c.points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for s, pts in c.points.items():
        n = np.array(sorted(int(k) for k in pts))
        accs = [pts[str(k)] for k in n]
        mean = np.array([np.mean(a) for a in accs])
        lo, hi = np.array([min(a) for a in accs]), np.array([max(a) for a in accs])
        ax.errorbar(n, mean, yerr=[mean - lo, hi - mean], fmt="o", capsize=3, color=_color(s), label=s)
        fit = c.needed[s].fit if s in c.needed else None
        if fit:
            grid = np.geomspace(n.min(), n.max() * 2, 50)
            ax.plot(grid, 1 - fit.a * grid ** -fit.b, "--", color=_color(s), lw=1)
    if c.target:
        ax.axhline(c.target, color="k", lw=0.8, ls=":", label=f"target {100 * c.target:.1f}%")
    ax.set_xscale("log")
    counts = sorted({int(k) for pts in c.points.values() for k in pts})
    ax.set_xticks(counts, [str(k) for k in counts])     # the measured label counts, not 2x10^1-style ticks
    ax.minorticks_off()
    ax.set_xlabel("training labels (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Label efficiency (points: mean, bars: seed range; dashed: power-law fit)")
    ax.legend(fontsize=8)
    return fig


def _losses(results: RunResults, run_dir: Path):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    arms = [s for s, m in results.ok.items() if m.epoch_budget]
    if not arms:
        return None
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.4), squeeze=False)
    for ax, s in zip(axes[0], arms):
        r = unit_result(run_dir, s, 0)
        if r is None or not r.ok:
            continue
        h = r.history
        ep = [row["epoch"] for row in h]
        ax.plot(ep, [row["train_loss"] for row in h], "-o", ms=3, label="train loss")
        ax.plot(ep, [row["val_loss"] for row in h], "-o", ms=3, label="val loss")
        for e in r.events:
            m = re.match(r"epoch (\d+): unfroze", e)
            if m and int(m.group(1)) > 0:
                ax.axvline(int(m.group(1)) - 0.5, color="grey", lw=0.8, ls="--")
        start = r.start_val if STRATEGIES[s].pretrained else None     # a random start's loss would flatten the plot
        if start:                          # the starting weights (LP-FT: the probe's head) are a candidate too
            ax.plot([-1], [start["val_loss"]], "s", color="C1", ms=5, label="val loss at start")
        best = r.best_epoch
        if best is not None and (best >= 0 or start):
            y = start["val_loss"] if best < 0 else h[[row["epoch"] for row in h].index(best)]["val_loss"]
            ax.plot([best], [y], "k*", ms=12, label="kept" + (" (start)" if best < 0 else ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        losses = [row[k] for row in h for k in ("train_loss", "val_loss") if row[k] > 0]
        if losses and max(losses) > 10 * min(losses):   # early epochs (scratch) would flatten the rest to a line
            ax.set_yscale("log")
        if r.stopped_early:
            ax.axvline(ep[-1], color="red", lw=1, label="early stop")
        title = s + (" (overfitting seen)" if r.overfit else "")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch (dashed: unfreeze)")
        ax.legend(fontsize=7)
    return fig


def _confusion(results: RunResults, run_dir: Path):
    import matplotlib.pyplot as plt
    rec = results.recommended
    conf = np.asarray(results.strategies[rec].confusion)
    classes = results.data.classes
    if len(classes) > 40:
        return None
    size = 3 + 0.35 * len(classes)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if conf[i, j] > conf.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix: {rec} (test, seed 0)")
    return fig
