"""Report sections on what reuse saves: labels (learning curves), compute, time and money; and report.html.

    lines = savings_lines(results)                  # Markdown lines (curve + cost tables), no torch
    html = render_html(markdown, run_dir)           # self-contained page: plots embedded as data URIs
"""
from __future__ import annotations

import base64
import html as _html
import re
from pathlib import Path

from headstart.core.run_results import RunResults
from headstart.core.sections import Needed, Saved
from headstart.outputs.common import money as _money
from headstart.outputs.common import table as _table
from headstart.training.strategies import NETWORK_BASELINE, STRATEGIES, TRANSFER


def _flops(x) -> str:
    if x is None:
        return "not counted (scikit-learn)"
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f} FLOP"


def _per_epoch(m) -> str:
    epochs = sum(m.epochs_run) / len(m.epochs_run) if m.epoch_budget and m.epochs_run else 0
    return f"{m.train_seconds / epochs:.1f} s" if epochs else "—"


def _labels(n) -> str:
    return "not reached" if n is None else f"{n:,.0f}"


def _saved(results: RunResults):
    """(curve, best transfer arm, its labels-saved entry vs scratch), or Nones when no curve measured it."""
    c = results.curve
    if not c or not c.saved:
        return c, None, None
    t = results.best_arm(TRANSFER)
    return c, t, c.saved.get(f"{t} vs {NETWORK_BASELINE}")


def _money_range(s: Saved) -> tuple[str, str] | None:
    money = [abs(m) for m in s.money or []]
    return (_money(money[0]), _money(money[-1])) if money else None


def labels_saved_cell(results: RunResults) -> str:
    """The verdict card's labels-saved cell: '240 labels (≈ $1,200–$4,800)', or '' when not measured."""
    results = RunResults.of(results)
    _, _, s = _saved(results)
    if not s or s.saved is None:
        return f"at least {s.at_least:,.0f} labels" if s and s.at_least is not None else ""
    money = _money_range(s)
    cost = f" (≈ {money[0]}–{money[1]})" if money else ""
    return f"{s.saved:,.0f} labels{cost}" if s.saved >= 0 else f"none: {-s.saved:,.0f} more labels{cost}"


def curve_summary(results: RunResults) -> str:
    """One sentence for the verdict: labels (and money) transfer saved, or why that is not known."""
    results = RunResults.of(results)
    c, t, s = _saved(results)
    if not s:
        return ""
    target = f"{100 * c.target:.1f}% test accuracy ({c.target_source})"
    if c.bounded and c.target_source == "best scratch score":
        target += ", a score of scratch units stopped by racing, so a bound, not scratch's best possible"
    if s.saved is None:
        if s.at_least is not None:
            return (f"To reach {target}, `{t}` needs {_labels(c.needed[t].labels)} labels; scratch did not "
                    f"reach it within the measured range, so transfer saves at least {s.at_least:,.0f} labels. ")
        return f"Labels saved: unknown ({s.note}). "
    seeds = max(len(v) for p in c.points.values() for v in p.values())
    ci = (f" (95% CI {s.ci[0]:,.0f} to {s.ci[1]:,.0f})" if s.ci else
          " (one seed, so no interval: --seeds 3 gives one)" if seeds < 2 else
          " (no interval: with these seeds the bootstrap does not reach the target in every resample; more seeds "
          "would bound it)")
    money = _money_range(s)
    per = f"${c.cost_per_label[0]:g}–${c.cost_per_label[-1]:g} per label"
    if s.saved >= 0:
        cost = f", i.e. {money[0]}–{money[1]} of annotation at {per}" if money else ""
        return f"To reach {target}, `{t}` saves {s.saved:,.0f} training labels vs scratch{ci}{cost}. "
    cost = f" ({money[0]}–{money[1]} more annotation at {per})" if money else ""
    return (f"To reach {target}, `{t}` needs {-s.saved:,.0f} **more** training labels than scratch{ci}{cost}: "
            "transfer did not save labels here. ")


def savings_lines(results: RunResults, plots: dict) -> list[str]:
    results = RunResults.of(results)
    lines = []
    c = results.curve
    if c and c.points:
        lines += ["## Label efficiency", "",
                  f"Every strategy trained on nested stratified fractions {c.fractions} of the training labels "
                  f"(same seeds, same test split; the {c.val_items} validation items stay fixed for early "
                  "stopping and model choice). Fits: error = a · labels^-b, least squares in log-log space; "
                  "intervals: bootstrap over seeds; no extrapolation beyond 2x the largest label count.", ""]
        counts = sorted({int(n) for p in c.points.values() for n in p})
        rows = []
        raced = {(b["strategy"], b["labels"]) for b in c.bounded}
        for s, p in c.points.items():
            need = c.needed.get(s, Needed())
            rows.append([s] + [("—" if str(n) not in p else f"{100 * sum(p[str(n)]) / len(p[str(n)]):.1f}% "
                                f"(±{50 * (max(p[str(n)]) - min(p[str(n)])):.1f})" + ("*" if (s, n) in raced else ""))
                               for n in counts]
                        + [_labels(need.labels) + (" or fewer" if need.at_most else "")
                           + (f" [{need.ci[0]:,.0f}, {need.ci[1]:,.0f}]" if need.ci else "")])
        target = f"labels for {100 * c.target:.1f}%" if c.target else "labels for target"
        lines += [_table(["strategy"] + [f"{n} labels" for n in counts] + [target], rows), ""]
        if raced:
            lines += ["\\* stopped by racing (bounded, not final): even the optimistic extrapolation of that "
                      "scratch unit's validation curve stayed below the transfer arm's, so it was not trained to the "
                      "end of its budget; its label cost is estimated from a curve that might still have risen a "
                      "little (`--full-scratch` trains every unit fully).", ""]
        summary = curve_summary(results)
        if summary:
            lines += [summary, ""]
        if "curve" in plots:
            lines += [f"![learning curves]({plots['curve']})", ""]
    lines += cost_lines(results)
    if "losses" in plots:
        lines += ["## Training curves", "", "Train/validation loss per epoch (seed 0); star: the epoch kept; dashed: "
                  "a block group unfrozen; red: early stop.", "", f"![loss curves]({plots['losses']})", ""]
    if "confusion" in plots:
        lines += [f"![confusion matrix]({plots['confusion']})", ""]
    return lines


def cost_lines(results: RunResults) -> list[str]:
    results = RunResults.of(results)
    ok = {s: m for s, m in results.ok.items() if m.compute}
    if not ok:
        return []
    first = next(iter(ok.values())).compute
    dev = first.device.upper()
    rows = [[s, f"{c.wall_seconds:.1f} s", f"{c.cpu_seconds:.1f} s", _per_epoch(m), _flops(c.flops_train),
             _flops(c.flops_inference_per_item), f"{c.peak_rss_gib:.2f} GiB", f"{m.trainable_params:,}"
             + (f" ({100 * m.trainable_params / m.total_params:.2f}%)" if m.total_params else ""),
             f"{m.policy['adapter_mb']:.2f} MB" if "adapter_mb" in m.policy else "—",
             f"{c.device_hours:.4f}", f"{1000 * c.energy_kwh:.2f} Wh", _money(c.money)]
            for s, m in ok.items() for c in [m.compute]]
    lines = ["## Compute and cost", "",
             _table(["strategy", "wall time", "CPU time", "training s / epoch", "training FLOPs",
                     "inference FLOPs / item", "peak memory (process)", "trainable params (share)", "adapter on disk",
                     f"{dev} hours", "energy", "cost"], rows), "",
             f"Priced at ${first.price_per_hour:g} per {dev} hour and {first.watts:g} W "
             "(--price-per-hour, --device-watts to use yours). Training FLOPs count every epoch at the final "
             "unfreeze state (an upper bound) plus validation passes; the linear probe's are one frozen forward "
             "pass over every item. Peak memory is the process's peak so far (exact per unit with --jobs).", ""]
    t, base = results.best_arm(TRANSFER), NETWORK_BASELINE
    if t and base in ok and t in ok:
        c = results.curve
        need = c.needed if c else {}
        rows = []
        for s in (t, base):
            m = ok[s]
            data = ((f"{_labels(need[s].labels)} labels for {100 * c.target:.1f}%" if need[s].labels else
                     f"{100 * c.target:.1f}% not reached") if s in need else
                    f"{results.data.n_train} labels used → {100 * m.accuracy:.1f}%")
            rows.append([STRATEGIES[s].short, data, f"{_flops(m.compute.flops_train)}, {_money(m.compute.money)}",
                         f"{m.compute.wall_seconds:.0f} s to a trained model"])
        lines += ["### Scratch vs transfer, with this run's numbers", "",
                  _table(["approach", "data required", "compute cost", "time to deploy"], rows), "",
                  _table(["approach", f"{dev} hours", "training time", "cost"],
                         [[STRATEGIES[s].short, f"{ok[s].compute.device_hours:.4f}",
                           f"{ok[s].compute.wall_seconds:.1f} s", _money(ok[s].compute.money)]
                          for s in (t, base)]), ""]
    return lines


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;"
       "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px;display:block;overflow-x:auto;"
       "max-width:100%}td,th{border:1px solid #ccc;"
       "padding:4px 8px;text-align:left}th{background:#f3f3f3}img{max-width:100%}code{background:#f5f5f5;"
       "padding:1px 3px}pre{background:#f5f5f5;padding:8px;overflow-x:auto}h1,h2,h3,p,li{overflow-wrap:anywhere}")


def render_html(markdown: str, run_dir: Path, title: str = "headstart report") -> str:
    """report.md as one self-contained HTML page, via markdown-it (installed with rich). Raw HTML in the Markdown
    (a class name or label such as `<img src=x onerror=…>`) is escaped, never rendered; only the run's own plots
    (plots/*.png inside the run folder) are inlined, so a label naming a local file cannot pull it into the page."""
    from markdown_it import MarkdownIt
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    plots = (Path(run_dir) / "plots").resolve()

    def inline(m):
        path = (Path(run_dir) / _html.unescape(m.group(1))).resolve()
        if path.parent != plots or not path.is_file():
            return 'src=""'
        data = base64.b64encode(path.read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'
    body = re.sub(r'src="([^"]*)"', inline, body)
    # phones: the page keeps its width and each wide table scrolls on its own (display:block; overflow-x:auto)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            f"content=\"width=device-width, initial-scale=1\"><title>{_html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n{body}</body></html>\n")
