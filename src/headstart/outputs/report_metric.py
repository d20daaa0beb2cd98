"""The report's words for the decision metric: which metric and why, collapsed arms, classes the test split holds too
few of, and a binary task's operating point. Runs from before the decision metric (no "metric" key) read as
accuracy. No torch."""
from __future__ import annotations

from headstart.core.run_results import ArmSummary, RunResults
from headstart.outputs.common import ci as _ci
from headstart.outputs.common import pct as _pct
from headstart.outputs.common import table as _table
from headstart.stats.metrics import LABELS, REBALANCE, collapse_words

FEW_TEST = 10          # a class with fewer test items than this gets its recall interval spelled out


def metric_name(results: RunResults) -> str:
    return RunResults.of(results).metric_name


def metric_label(results: RunResults) -> str:
    return LABELS.get(metric_name(results), metric_name(results))


def collapsed(m: ArmSummary) -> str:
    """'' or what the arm ignores on test, in words."""
    return collapse_words(ArmSummary.of(m).collapse or {})


def score_cells(results: RunResults, m: ArmSummary) -> str:
    """'92.9% [81.0, 97.5] accuracy, 50.0% [50.0, 50.0] balanced accuracy' (one figure when the metric is accuracy)."""
    acc = f"{_pct(m.accuracy)} {_ci(m.accuracy_ci)}"
    if metric_name(results) == "accuracy":
        return f"{acc} accuracy"
    return f"{_pct(m.score)} {_ci(m.score_ci)} {metric_label(results)} (accuracy {acc})"


def metric_lines(results: RunResults) -> list[str]:
    """Decision metric and class weighting, collapse flags, thin classes in test, the binary operating point."""
    results = RunResults.of(results)
    met, ok = results.metric, results.ok
    lines = []
    if met:
        lines += [f"**Decision metric: {met.label}**: {met.why}. Every choice (the probe's and the classic "
                  "baseline's C, early stopping, racing, the arm to deploy, the learning curve's target) runs on it"
                  + ("" if met.rebalance == "none" else
                     f"; against the imbalance, {REBALANCE[met.rebalance]} (`--rebalance none` turns it off)")
                  + ".", ""]
    flags = [(s, collapsed(m)) for s, m in ok.items() if collapsed(m)]
    if flags:
        lines += ["**Collapsed arms** (they ignore a class on test; never deployed over an arm that does not ignore "
                  "one on validation):", ""] + [f"- `{s}` {w}" for s, w in flags] + [""]
    rec = results.recommended
    m = ok.get(rec)
    if m and m.per_class_n:
        thin = [(c, n) for c, n in m.per_class_n.items() if 0 < n < FEW_TEST]
        if thin:
            lines += ["**Few test items** in " + ", ".join(
                f"`{c}` ({round(m.per_class_recall[c] * n)} of {n} recalled by `{rec}`; with {n} item(s) the "
                f"95% interval is {_ci(m.per_class_recall_ci[c])})" for c, n in thin)
                + ": per-class numbers there are rough; more labelled items of those classes would firm them up.", ""]
    b = m.binary if m else None
    if b:
        rule = m.operating_point[0].why if m.threshold is not None else "argmax (0.5)"
        auc = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        lines += [f"**Operating point of `{rec}`** (positive class `{b.positive}`; threshold on its probability: "
                  f"{rule}; saved with the exported model and used by `headstart predict`):", "",
                  _table(["precision", "recall", "ROC AUC", "PR AUC"],
                         [[_pct(b.precision), _pct(b.recall), auc(b.roc_auc), auc(b.pr_auc)]]), ""]
    return lines
