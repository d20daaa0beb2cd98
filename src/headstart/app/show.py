"""What the command line prints (rich): the run summary, backbone comparison, assessment, suggestions,
predictions and the demo's learning curve. Each takes the console to print on."""
from __future__ import annotations

from pathlib import Path

from rich.markdown import Markdown
from rich.table import Table

from headstart.core.comparison import AssessReport, Comparison
from headstart.core.run_results import RunResults
from headstart.core.sections import Suggestions
from headstart.outputs.report import SUMMARY_HEADER, recommendation, summary_header, summary_rows
from headstart.outputs.report_metric import collapsed, metric_label, metric_name
from headstart.stats.metrics import REBALANCE
from headstart.outputs.report_assess import SCORE_HEADER, score_rows
from headstart.outputs.report_compare import HEADER, comparison_rows

NARROW_DROPS = ("macro-F1", "stopped early?", "overfitting?")    # left out below 110 columns (report.md has them)


def summary(console, results: RunResults) -> None:
    results = RunResults.of(results)
    header = summary_header(results)
    keep = [i for i, h in enumerate(header) if console.width >= 110 or h not in NARROW_DROPS]
    table = Table(title="headstart summary (test split)", caption=None if len(keep) == len(header) else
                  "narrow terminal: macro-F1 and the early-stopping / overfitting flags are in report.md")
    for i in keep:     # names and scores never wrap or truncate
        table.add_column(header[i], no_wrap=i < 2 + (len(header) > len(SUMMARY_HEADER)))
    for row in summary_rows(results):
        table.add_row(*[row[i] for i in keep])
    console.print(table)
    met = results.metric
    if met and (met.name != "accuracy" or met.rebalance != "none"):
        console.print(f"decision metric: {met.label} ({met.why}); {REBALANCE[met.rebalance]}",
                      highlight=False, markup=False)
    for s, m in results.ok.items():
        if collapsed(m):
            console.print(f"collapsed: {s} {collapsed(m)}", style="bold yellow", highlight=False, markup=False)
    for k, v in results.paired_differences.items():
        lo, hi = v.points_ci
        console.print(f"{k}: {v.points:+.1f} pts{_of(results)}, paired 95% CI [{lo:+.1f}, {hi:+.1f}]")
    console.print(Markdown(recommendation(results)))
    console.print(f"report: {results.report} (and report.html)")


def _of(results: RunResults) -> str:
    return "" if metric_name(results) == "accuracy" else f" of {metric_label(results)}"


def comparison(console, res: Comparison) -> None:
    keep = [0, 3, 4, 5, 7, 8, 10, 11]      # backbone, arm, val, test, training s, GFLOPs, MB, latency
    table = Table(title="which backbone (test split; chosen on validation)")
    for i in keep:
        table.add_column(HEADER[i], no_wrap=i == 0)
    for row in comparison_rows(res):
        table.add_row(*[row[i] for i in keep])
    console.print(table)
    console.print(res.agreement.words + ".", highlight=False)
    console.print(Markdown("**Recommendation:** " + res.summary))
    console.print(f"report: {Path(res.out) / 'report.md'} (and report.html)")


def assessment(console, res: AssessReport) -> None:
    table = Table(title="transferability (ranked by LogME; higher is better)")
    for h in SCORE_HEADER:
        table.add_column(h)
    for row in score_rows(res.ranking):
        table.add_row(*row)
    console.print(table)
    best = res.ranking[0]
    v = best.verdict
    console.print(f"{best.backbone}: {v.label}. Try {v.try_first} first: {v.why}.", style="bold", highlight=False,
                  markup=False)
    for e in v.evidence:
        console.print(f"  - {e}", highlight=False, markup=False)
    for s in res.skipped:
        console.print(f"not assessed {s.backbone}: {s.reason}", style="yellow", highlight=False, markup=False)


def suggestions(console, res: Suggestions) -> None:
    table = Table(title=f"label these first ({len(res.rows)} of {res.pool} unlabelled items)")
    deployed = bool(res.deployed)
    for h in ("rank", "item", "why", "predicted") + ((f"deployed {res.deployed}",) if deployed else ()) + ("score",):
        table.add_column(h, no_wrap=h == "rank")
    for r in res.rows[:15]:
        table.add_row(str(r.rank), r.item, r.why, f"{r.predicted} {r.probability:.2f}",
                      *([f"{r.deployed_predicted} {r.deployed_probability:.2f}"] if deployed else []),
                      f"{r.score:.3f}")
    console.print(table)
    for s in res.skipped[:5]:
        console.print(f"skipped {s.path}: {s.reason}", style="yellow", highlight=False, markup=False)
    if len(res.skipped) > 5:
        console.print(f"[yellow]skipped[/] … and {len(res.skipped) - 5} more (listed in the CSV)")


def predictions(console, rows: list[dict]) -> None:
    texts = any(r.get("text") is not None for r in rows)      # text models echo each input's text
    table = Table()
    for h in ["input"] + ["input text"] * texts + ["prediction", "probability", "top classes"]:
        table.add_column(h)
    for r in rows:
        lead = [r["path"]] + ([r.get("text", "")[:60]] if texts else [])
        if "error" in r:
            table.add_row(*lead, "[red]skipped[/]", "", r["error"])
        else:
            table.add_row(*lead, r["label"], f"{r['prob']:.3f}", ", ".join(f"{c} {p:.2f}" for c, p in r["top"]))
    rule = next((r for r in rows if "threshold" in r), None)
    if rule:
        table.caption = (f"operating point: the positive class when its probability reaches {rule['threshold']:.3f} "
                         "(chosen on validation for the run's decision metric)")
    console.print(table)


def demo_curve(console, res: RunResults) -> None:
    c = res.curve
    counts = sorted({int(n) for p in c.points.values() for n in p})
    table = Table(title="digits: test accuracy by training labels (all 10 digits together)")
    for h in ["strategy", *[f"{n} labels" for n in counts]]:
        table.add_column(h)
    for s, p in c.points.items():
        table.add_row(s, *[f"{100 * sum(p[str(n)]) / len(p[str(n)]):.1f}%" if str(n) in p else "—"
                           for n in counts])
    console.print(table)


def backbones(console, rows: list[dict]) -> None:
    table = Table()
    for h in ("backbone", "available offline", "weights", "input size"):
        table.add_column(h)
    for r in rows:
        avail = {True: "yes", False: "no", None: "—"}[r["available"]]
        table.add_row(r["name"], avail, r["source"], str(r["input_size"] or ""))
    console.print(table)
