"""results.json -> report.md: tables a person reads in a minute, ending with what to deploy and why. No torch."""
from __future__ import annotations

from headstart.core.run_results import ArmSummary, RunResults
from headstart.outputs.common import ci as _ci
from headstart.outputs.common import money as _money
from headstart.outputs.common import params as _params
from headstart.outputs.common import pct as _pct
from headstart.outputs.common import table as _table
from headstart.outputs.report_cost import curve_summary, labels_saved_cell, savings_lines
from headstart.outputs.report_metric import collapsed, metric_label, metric_lines, score_cells
from headstart.outputs.report_gallery import gallery_lines
from headstart.outputs.report_labels import label_lines
from headstart.outputs.report_next import next_steps_lines
from headstart.stats.metrics import collapse_words
from headstart.outputs.report_training import training_lines, work_lines
from headstart.training.strategies import BASELINES, NETWORK_BASELINE, STRATEGIES, TRANSFER


def summary_rows(results: RunResults) -> list[list[str]]:
    """The summary table (also printed by the CLI): one row per strategy."""
    results = RunResults.of(results)
    rows = []
    for s, m in results.strategies.items():
        if not m.ok:
            rows.append([s, "failed: " + m.failed] + [""] * (len(summary_header(results)) - 2))
            continue
        epochs = "/".join(str(e) for e in m.epochs_run) if m.epoch_budget else "—"
        budget = f" of {m.epoch_budget}" if m.epoch_budget else ""
        rows.append([s + (" (collapsed)" if collapsed(m) else ""),
                     f"{_pct(m.accuracy)} {_ci(m.accuracy_ci)}" + (" (bounded)" if m.bounded else ""),
                     *([f"{_pct(m.score)} {_ci(m.score_ci)}"] if results.metric_name != "accuracy" else []),
                     f"{m.macro_f1:.3f}", f"{m.train_seconds:.1f} s",
                     epochs + budget + (" (raced)" if m.bounded else ""),
                     "yes" if m.stopped_early else "no", "yes" if m.overfit else "no",
                     f"{_params(m.trainable_params)} / {_params(m.total_params)}"])
    return rows


def racing_lines(results: RunResults) -> list[str]:
    """One line per arm that racing stopped: what it reached, the bound, and how to get the full number."""
    results = RunResults.of(results)
    lines = []
    for s, m in results.strategies.items():
        for r in m.provenance.raced if m.ok else []:
            lines.append(f"- `{s}` seed {r['seed']}: {r['message']}. Its numbers are **bounded, not final** "
                         f"(optimistic extrapolation plus a {100 * r['margin']:.0f}-point margin); `--full-scratch` "
                         "trains the whole budget.")
    return lines + [""] if lines else []


SUMMARY_HEADER = ["strategy", "test accuracy (95% CI)", "macro-F1", "train time", "epochs run",
                  "stopped early?", "overfitting?", "trainable / total params"]


def summary_header(results: RunResults) -> list[str]:
    """SUMMARY_HEADER, with the decision metric's column after accuracy when it is another metric."""
    if RunResults.of(results).metric_name == "accuracy":
        return SUMMARY_HEADER
    return SUMMARY_HEADER[:2] + [f"test {metric_label(results)} (95% CI)"] + SUMMARY_HEADER[2:]


def recommendation(results: RunResults) -> str:
    results = RunResults.of(results)
    rec, ok, deltas = results.recommended, results.ok, results.paired_differences
    m = results.strategies[rec]
    text = f"**Deploy `{rec}`** ({STRATEGIES[rec].label if rec in STRATEGIES else rec}): " + _why(results) + (
        f" It scores {score_cells(results, m)} on the held-out test set (95% CIs, n={m.n_test}). ")
    best_t = rec if rec in TRANSFER else results.best_arm(TRANSFER)
    pts = "points" if results.metric_name == "accuracy" else f"points of {metric_label(results)}"
    base = NETWORK_BASELINE
    d = deltas.get(f"{best_t} - {base}") if best_t and base in ok else None
    if d and d.significant and d.difference > 0:
        text += (f"Transfer pays off here: `{best_t}` beats training from scratch by {d.points:+.1f} {pts} (paired "
                 f"95% CI {_ci(d.ci)}" + ("; scratch was stopped by racing once its optimistic extrapolation could "
                                          "not catch up" if ok[base].bounded else "") + ") ")
        text += f"while training {ok[best_t].seconds:.0f} s vs {ok[base].seconds:.0f} s. "
    elif d and d.significant:
        text += (f"Transfer did **not** help: scratch beats `{best_t}` by {-d.points:.1f} {pts} (paired 95% CI "
                 f"{_ci([-d.ci[1], -d.ci[0]])}); the target domain may be far from the pretraining data, or there "
                 "are enough labels to learn from scratch. ")
    elif d:
        text += (f"Transfer vs scratch is within noise on this test set ({d.points:+.1f} {pts}, paired 95% CI "
                 f"{_ci(d.ci)}): transfer did not measurably win on {metric_label(results)}; its gain here is cost "
                 f"({ok[best_t].seconds:.0f} s vs {ok[base].seconds:.0f} s of training). ")
    for other in BASELINES[1:]:         # the baselines practitioners use without a network (classic)
        d = deltas.get(f"{best_t} - {other}") if other in ok else None
        if d:
            verdict = ("beats" if d.difference > 0 else "loses to") if d.significant else "is within noise of"
            text += (f"Against the classic baseline practitioners use, `{best_t}` {verdict} it "
                     f"({d.points:+.1f} {pts}, paired 95% CI {_ci(d.ci)}). ")
    text += curve_summary(results)
    if m.compute:
        text += (f"Training it took {m.compute.wall_seconds:.0f} s ({_money(m.compute.money)} at "
                 f"${m.compute.price_per_hour:g}/h). ")
    if m.overfit:
        text += "Its validation loss showed overfitting; early stopping restored the best epoch. "
    if results.model and results.model.onnx_skipped:
        text += results.model.onnx_skipped + ". "
    text += "Run `headstart predict <run>/model <inputs>` to use the exported model."
    return text


def _why(results: RunResults) -> str:
    """Why this arm: the best deployable one on validation, a tie within validation noise, or the best network when
    the best arm is a baseline headstart does not export; and which fine-tuned arm never left its start."""
    c, rec = results.recommendation, results.recommended
    val = {s: v.val_score for s, v in results.ok.items()}
    tied = [s for s in c.tied_within_noise if s != rec]
    words = metric_label(results)
    if tied:
        text = (f"validation cannot separate it from {', '.join(f'`{s}`' for s in tied)} (validation {words} "
                f"{', '.join(f'{s} {_pct(val[s])}' for s in [rec, *tied])} lie within "
                f"{100 * c.validation_noise:.0f} points, the {'paired ' if c.paired else ''}noise of "
                f"{c.n_val} validation items); they share one network and cost the same to serve, so the better "
                "validation score decides; chosen without looking at the test set.")
    else:
        text = (f"it had the highest validation {words} of the arms headstart exports ({_pct(val[rec])}; chosen "
                "without looking at the test set).")
    for s in c.passed_over_collapsed:
        text += (f" `{s}` ({_pct(val[s])} on validation) was passed over: it ignores a class on validation "
                 f"({collapse_words(results.strategies[s].val_collapse or {}, 'validation')}).")
    best = c.best_on_validation or rec
    if best != rec and best not in c.tied_within_noise:
        text += (f" `{best}` scored higher on validation ({_pct(val[best])}), but it is a baseline headstart does not "
                 "export for `predict`.")
    probe = next((s for s in results.ok if STRATEGIES[s].runner == "probe"), None)
    for s in c.kept_starting_weights:
        text += (f" `{s}` did not move: no epoch improved its validation loss on its starting weights (the pretrained "
                 "backbone with the probe's head fitted on the training split), so fine-tuning bought nothing here.")
        if probe:
            a, b = results.strategies[s], results.strategies[probe]
            bf16 = "bfloat16" in str(b.policy.get("features", ""))
            text += (f" Its test score ({_pct(a.score)}) is not `{probe}`'s ({_pct(b.score)}) because the deployed "
                     "probe's head is refit on train + validation" + (" and reads the cached bfloat16 features"
                                                                        if bf16 else "") + ".")
    return text


def assessment_lines(results: RunResults) -> list[str]:
    """Predicted (before training) beside measured (after): so a wrong verdict is visible."""
    results = RunResults.of(results)
    a = results.assessment
    if not a:
        return []
    if not a.ok:
        return ["## Before training: predicted vs measured", "",
                f"The assessment failed ({a.failed}); the arms trained without it.", ""]
    c, v, sc = a.check, a.verdict, a.scores
    held = {True: "yes", False: "**no**", None: "—"}
    fmt = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    rows = []
    for key, what in (("vs_scratch", "transfer vs the same network from scratch"),
                      ("vs_classic", "transfer vs the classic baseline")):
        r = c.rows.get(key)
        if not r or r.predicted is None:
            continue
        measured = r.measured
        if r.difference is not None:
            measured += (f" (`{c.best_transfer}` − `{r.baseline}`: {100 * r.difference:+.1f} pts, {_ci(r.ci)}"
                         + ("; scratch stopped by racing, so a bound" if r.bounded else "") + ")")
        rows.append([what, r.predicted, measured, held[r.agrees]])
    rows.append(["try first", v.try_first, f"best transfer arm on validation: {c.best_transfer}",
                 held[c.try_first_agrees]])
    return ["## Before training: predicted vs measured", "",
            _table(["", "predicted (assessment)", "measured (this run)", "held?"], rows), "",
            f"Assessment of `{a.backbone}` on the {a.n_items} train+val items ({a.seconds:.1f} s): LogME "
            f"{fmt(sc.logme)}, H-score {fmt(sc.hscore)}, LEEP {fmt(sc.leep)}, NCE {fmt(sc.nce)}; "
            f"why `{v.try_first}` first: {v.why}.", "", *[f"- {e}" for e in v.evidence], ""]


def leakage_lines(results: RunResults) -> list[str]:
    results = RunResults.of(results)
    lk = results.leakage
    if not lk:
        return []
    c = lk.counts
    lines = ["## Duplicates and leaks (checked before training)", "",
             f"{c.leak} pair(s) across splits (leaks), {c.conflict} with conflicting labels, {c.duplicate} "
             f"within a split; {c.exact} exact (same content hash), {c.normalised} normalised (same "
             f"text ignoring case, punctuation and spacing), {c.near} near (frozen-feature cosine "
             f">= {lk.threshold:.3f})" + (f", of which {c.similar} are only *similar*: close in embedding, "
                                       "listed last, never counted as leaks or conflicts" if c.similar else "")
             + "."]
    if lk.near_skipped:
        lines.append(lk.near_skipped[0].upper() + lk.near_skipped[1:] + ".")
    if lk.removed_from_train is not None:
        lines.append(f"`--dedupe` removed {len(lk.removed_from_train)} train item(s) before training.")
    elif c.leak or c.conflict:
        lines.append("Test scores may be optimistic (leaks) or capped (conflicts); `--dedupe` drops the train side.")
    lines.append("")
    if lk.pairs:
        lines += [_table(["kind", "match", "similarity", "item", "split / label", "item", "split / label"],
                         [[p.kind, p.match, f"{p.similarity:.3f}", f"`{p.a}`", f"{p.roles[0]} / {p.labels[0]}",
                           f"`{p.b}`", f"{p.roles[1]} / {p.labels[1]}"] for p in lk.pairs[:30]]), ""]
        if lk.all_pairs > 30:
            lines += [f"… {lk.all_pairs - 30} more pair(s) in results.json (first {len(lk.pairs)}).", ""]
    return lines


def verdict_card(results: RunResults) -> list[str]:
    """The answer in five lines, before the paragraph that argues it: what to deploy, its test score, what it gains
    over scratch and over the classic baseline, what it saves in labels, what it costs to train."""
    results = RunResults.of(results)
    rec, ok = results.recommended, results.ok
    m = results.strategies[rec]
    t = rec if rec in TRANSFER else results.best_arm(TRANSFER)
    accuracy = results.metric_name == "accuracy"
    rows = [["deploy", f"**`{rec}`** ({STRATEGIES[rec].label})"],
            ["test " + ("accuracy" if accuracy else metric_label(results)),
             f"{_pct(m.score)} {_ci(m.score_ci)}, n={m.n_test}"]]
    if not accuracy:
        rows.append(["test accuracy", f"{_pct(m.accuracy)} {_ci(m.accuracy_ci)}"])
    rows += [[f"`{s}` collapsed", collapsed(v)] for s, v in ok.items() if collapsed(v)]
    for base in BASELINES:
        d = results.paired_differences.get(f"{t} - {base}") if t else None
        if d and base in ok:
            word = ("wins" if d.difference > 0 else "loses") if d.significant else "within noise"
            rows.append([f"`{t}` vs {base}", f"{d.points:+.1f} points {_ci(d.ci)}: {word}"
                         + ("" if accuracy else f" ({metric_label(results)})")
                         + (" (scratch stopped by racing: a bound)" if ok[base].bounded else "")])
    saved = labels_saved_cell(results)
    if saved:
        rows.append(["labels saved vs scratch", saved])
    if m.compute:
        rows.append(["training cost", f"{m.compute.wall_seconds:.0f} s ({_money(m.compute.money)} at "
                                      f"${m.compute.price_per_hour:g}/h)"])
    return [_table(["verdict", ""], rows), ""]


def render_markdown(results: RunResults) -> str:
    results = RunResults.of(results)
    d, ok = results.data, results.ok
    lines = [f"# headstart report: {d.root}", "", *verdict_card(results), recommendation(results), "",
             *metric_lines(results),
             "## Results (test split, used once)", "", _table(summary_header(results), summary_rows(results)), "",
             *racing_lines(results)]
    deltas = results.paired_differences
    scratch = results.strategies.get(NETWORK_BASELINE, ArmSummary())
    if deltas:
        lines += ["### Transfer − scratch (paired over the same test images)", "",
                  _table(["comparison", f"{metric_label(results)} difference", "95% CI", "beyond noise?"],
                         [[k + (f" ({NETWORK_BASELINE} bounded)" if k.endswith(NETWORK_BASELINE) and scratch.bounded
                                else ""), f"{v.points:+.1f} pts", _ci(v.ci), "yes" if v.significant else "no"]
                          for k, v in deltas.items()]), ""]
    lines += assessment_lines(results)
    lines += savings_lines(results, results.plots)
    test = d.counts.test or {}
    lines += ["### Per-class recall", "",
              _table(["strategy"] + [f"{c} (n={n})" for c, n in test.items()],
                     [[s] + [_pct(m.per_class_recall[c]) if test.get(c, 1) else "no test items" for c in d.classes]
                      for s, m in ok.items()]), ""]
    rec = results.recommended
    conf = results.strategies[rec].confusion
    lines += [f"### Confusion matrix of `{rec}` (test items; rows: true class, columns: predicted; seed 0)", "",
              _table(["true \\ predicted"] + d.classes + ["items", "recall"],
                     [[f"**{c}**"] + [f"**{n}**" if i == j else (str(n) if n else "·") for j, n in enumerate(row)]
                      + [str(sum(row)), _pct(row[i] / sum(row)) if sum(row) else "—"]
                      for i, (c, row) in enumerate(zip(d.classes, conf))]), "",
              "Bold: right; · : none.", ""]
    lines += gallery_lines(results)
    lines += ["## Data", "", f"{d.n_items} {d.modality} items, {len(d.classes)} classes, layout: {d.layout}.", "",
              _table(["role", "source", "images"] + d.classes,
                     [[r, source, sum(counts.values())] + [counts[c] for c in d.classes]
                      for (r, source), (_, counts) in zip(d.roles, d.counts)]), ""]
    lines += leakage_lines(results)
    lines += label_lines(results)
    if d.skipped:
        lines += [f"**{len(d.skipped)} file(s) skipped** (unreadable):", ""]
        lines += [f"- `{s.path}`: {s.reason}" for s in d.skipped[:50]]
        if len(d.skipped) > 50:
            lines.append(f"- … and {len(d.skipped) - 50} more (all in results.json)")
        lines.append("")
    lines += training_lines(results)
    lines += work_lines(results)
    lines += ["", f"Recommendation basis: {results.recommendation_basis}.", ""]
    lines += next_steps_lines(results)
    cfg = results.config
    lines += ["## Reproduce", "", "Every setting is in this run's `config.json` (the split in `split.json`):", "",
              "```", f"headstart run {cfg.data} --config {cfg.out}/config.json --out <new folder>", "```",
              "With the same `--out` the command resumes instead; finished units are reused.", "",
              "## Recommendation", "", recommendation(results), ""]
    return "\n".join(lines)
