"""comparison.json -> the report of `headstart run --backbones`: which starting point, measured, and what it costs.
No torch."""
from __future__ import annotations

from headstart.core.comparison import Comparison
from headstart.core.findings import BackboneCost
from headstart.outputs.common import ci, params, pct, table
from headstart.outputs.report_assess import gflops

HEADER = ["backbone", "assessment (LogME rank)", "why trained", "best transfer arm (val)", "val acc", "test acc",
          "95% CI", "training s", "GFLOPs / item", "params", "weights MB", "latency ms", "train-step peak GiB"]


def _num(x, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def comparison_rows(result: Comparison) -> list[list[str]]:
    result = Comparison.of(result)
    out = []
    for rank, b in enumerate(result.assessed, 1):
        r = result.rows.get(b)
        c = r.cost if r else result.not_trained[b].cost if b in result.not_trained else BackboneCost()
        lead = [f"**{b}**" if b == result.recommendation.recommended else b, str(rank)]
        if r is None:
            lead += ["not trained (below the top-k, not the cheapest)", "—", "—", "—", "—", "—"]
        elif not r.ok:
            lead += [r.why_trained, r.failed, "—", "—", "—", "—"]
        else:
            lead += [r.why_trained, f"`{r.arm}`", pct(r.val_acc), pct(r.accuracy), ci(r.accuracy_ci),
                     _num(r.arm_seconds, "{:.0f}")]
        out.append(lead + [gflops(c.flops_per_item), params(c.params) if c.params else "—", _num(c.weights_mb),
                           _num(c.latency_ms), _num(c.train_step_peak_gib, "{:.2f}")])
    return out


def render_comparison(result: Comparison) -> str:
    result = Comparison.of(result)
    rec = result.recommendation
    lines = [f"# Which backbone? {result.data}", "", f"**Recommendation:** {result.summary}", "",
             "## Measured on one split", "",
             f"Same split and seeds for every backbone ({result.n_val} validation items, {result.n_test} test "
             "items). The deploy choice uses validation only; test numbers are reported, never chosen on. Cost "
             "columns are measured on this machine: training seconds of the chosen arm, inference FLOPs and "
             "latency of one item, and the peak memory of one training step of the whole network at the run's "
             "batch size in a fresh process.", "",
             table(HEADER, comparison_rows(result)), ""]
    if result.baselines:
        lines += [f"Baselines, run once (in `{result.primary}`'s run): " + "; ".join(
            f"`{s}` {pct(m.accuracy)} {ci(m.accuracy_ci)} on test" + (" (stopped by racing: a bound)" if m.bounded
                                                                       else "")
            for s, m in result.baselines.items()) + ".", ""]
    lines += ["## Did the assessment rank them right?", "", result.agreement.words + ".", ""]
    if result.pairs:
        lines += [table(["pair (test, paired over items)", "difference", "95% CI", "beyond noise?"],
                        [[k, f"{d.points:+.1f} pts", ci(d.ci), "yes" if d.significant else "no"]
                         for k, d in result.pairs.items()]), ""]
    if rec.tied:
        lines += [f"Tied on validation (within {100 * rec.validation_noise:.1f} points of the best): "
                  f"{', '.join(rec.tied)}.", ""]
    lines += ["## Runs", ""]
    lines += [f"- `{b}`: {r.run}/report.md" for b, r in result.rows.items() if r.run]
    lines += ["- assessment of every backbone: assessment/assessment.md",
              "- model/: the exported model of the recommended backbone (predict with `headstart predict model/ …`)"]
    lines += [f"- {s.backbone} not assessed: {s.reason}" for s in result.skipped]
    return "\n".join(lines) + "\n"
