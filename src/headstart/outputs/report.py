"""results.json -> report.md: tables a person reads in a minute, ending with what to deploy and why. No torch."""
from __future__ import annotations

from headstart.outputs.common import bounded as _bounded
from headstart.outputs.common import ci as _ci
from headstart.outputs.common import money as _money
from headstart.outputs.common import params as _params
from headstart.outputs.common import pct as _pct
from headstart.outputs.common import table as _table
from headstart.core.results import best_arm
from headstart.outputs.report_cost import curve_summary, labels_saved_cell, savings_lines
from headstart.outputs.report_metric import (collapsed, metric_label, metric_lines, metric_name, score_cells,
                                             score_of, val_score)
from headstart.outputs.report_next import next_steps_lines
from headstart.stats.metrics import collapse_words
from headstart.outputs.report_training import training_lines
from headstart.training.strategies import BASELINES, NETWORK_BASELINE, STRATEGIES, TRANSFER


def summary_rows(results: dict) -> list[list[str]]:
    """The summary table (also printed by the CLI): one row per strategy."""
    rows = []
    for s, m in results["strategies"].items():
        if "failed" in m:
            rows.append([s, "failed: " + m["failed"]] + [""] * (len(summary_header(results)) - 2))
            continue
        epochs = "/".join(str(e) for e in m["epochs_run"]) if m["epoch_budget"] else "—"
        budget = f" of {m['epoch_budget']}" if m["epoch_budget"] else ""
        bounded = _bounded(m)
        sc, sc_ci = score_of(m)
        rows.append([s + (" (collapsed)" if collapsed(m) else ""),
                     f"{_pct(m['accuracy'])} {_ci(m['accuracy_ci'])}" + (" (bounded)" if bounded else ""),
                     *([f"{_pct(sc)} {_ci(sc_ci)}"] if metric_name(results) != "accuracy" else []),
                     f"{m['macro_f1']:.3f}", f"{m['train_seconds']:.1f} s",
                     epochs + budget + (" (raced)" if bounded else ""),
                     "yes" if m["stopped_early"] else "no", "yes" if m["overfit"] else "no",
                     f"{_params(m['trainable_params'])} / {_params(m['total_params'])}"])
    return rows


def racing_lines(results: dict) -> list[str]:
    """One line per arm that racing stopped: what it reached, the bound, and how to get the full number."""
    lines = []
    for s, m in results["strategies"].items():
        for r in (m.get("provenance") or {}).get("raced", []):
            lines.append(f"- `{s}` seed {r['seed']}: {r['message']}. Its numbers are **bounded, not final** "
                         f"(optimistic extrapolation plus a {100 * r['margin']:.0f}-point margin); `--full-scratch` "
                         "trains the whole budget.")
    return lines + [""] if lines else []


SUMMARY_HEADER = ["strategy", "test accuracy (95% CI)", "macro-F1", "train time", "epochs run",
                  "stopped early?", "overfitting?", "trainable / total params"]


def summary_header(results: dict) -> list[str]:
    """SUMMARY_HEADER, with the decision metric's column after accuracy when it is another metric."""
    if metric_name(results) == "accuracy":
        return SUMMARY_HEADER
    return SUMMARY_HEADER[:2] + [f"test {metric_label(results)} (95% CI)"] + SUMMARY_HEADER[2:]


def recommendation(results: dict) -> str:
    rec = results["recommended"]
    m = results["strategies"][rec]
    ok = {s: v for s, v in results["strategies"].items() if "failed" not in v}
    text = f"**Deploy `{rec}`** ({STRATEGIES[rec].label if rec in STRATEGIES else rec}): " + _why(results) + (
        f" It scores {score_cells(results, m)} on the held-out test set (95% CIs, n={m['n_test']}). ")
    deltas = results.get("paired_differences", {})
    best_t = rec if rec in TRANSFER else best_arm(results, TRANSFER)
    pts = "points" if metric_name(results) == "accuracy" else f"points of {metric_label(results)}"
    base = NETWORK_BASELINE
    if base in ok and deltas:
        if best_t and f"{best_t} - {base}" in deltas:
            d = deltas[f"{best_t} - {base}"]
            if d["significant"] and d["difference"] > 0:
                text += (f"Transfer pays off here: `{best_t}` beats training from scratch by "
                         f"{100 * d['difference']:+.1f} {pts} (paired 95% CI {_ci(d['ci'])}"
                         + ("; scratch was stopped by racing once its optimistic extrapolation could not catch up"
                            if _bounded(ok[base]) else "") + ") ")
                text += f"while training {_secs(ok[best_t]):.0f} s vs {_secs(ok[base]):.0f} s. "
            elif d["significant"]:
                text += (f"Transfer did **not** help: scratch beats `{best_t}` by {100 * -d['difference']:.1f} "
                         f"{pts} (paired 95% CI {_ci([-d['ci'][1], -d['ci'][0]])}); the target domain may be "
                         "far from the pretraining data, or there are enough labels to learn from scratch. ")
            else:
                text += (f"Transfer vs scratch is within noise on this test set ({100 * d['difference']:+.1f} "
                         f"{pts}, paired 95% CI {_ci(d['ci'])}): transfer did not measurably win on "
                         f"{metric_label(results)}; "
                         f"its gain here is cost ({_secs(ok[best_t]):.0f} s vs {_secs(ok[base]):.0f} s of "
                         "training). ")
    for other in BASELINES[1:]:         # the baselines practitioners use without a network (classic)
        d = deltas.get(f"{best_t} - {other}") if other in ok else None
        if d:
            verdict = ("beats" if d["difference"] > 0 else "loses to") if d["significant"] else "is within noise of"
            text += (f"Against the classic baseline practitioners use, `{best_t}` {verdict} it "
                     f"({100 * d['difference']:+.1f} {pts}, paired 95% CI {_ci(d['ci'])}). ")
    text += curve_summary(results)
    if m.get("compute"):
        text += (f"Training it took {m['compute']['wall_seconds']:.0f} s ({_money(m['compute']['money'])} at "
                 f"${m['compute']['price_per_hour']:g}/h). ")
    if m.get("overfit"):
        text += "Its validation loss showed overfitting; early stopping restored the best epoch. "
    if results.get("model", {}).get("onnx_skipped"):
        text += results["model"]["onnx_skipped"] + ". "
    text += "Run `headstart predict <run>/model <inputs>` to use the exported model."
    return text


def _secs(m: dict) -> float:
    """What an arm cost in wall time: its unit's (shared feature pass included), else its training loop's."""
    return (m.get("compute") or {}).get("wall_seconds", m["train_seconds"])


def _why(results: dict) -> str:
    """Why this arm: the best deployable one on validation, a tie within validation noise, or the best network when
    the best arm is a baseline headstart does not export; and which fine-tuned arm never left its start."""
    c, rec = results.get("recommendation") or {}, results["recommended"]
    val = {s: val_score(v) for s, v in results["strategies"].items() if "failed" not in v}
    tied = [s for s in c.get("tied_within_noise", []) if s != rec]
    words = metric_label(results)
    if tied:
        text = (f"validation cannot separate it from {', '.join(f'`{s}`' for s in tied)} (validation {words} "
                f"{', '.join(f'{s} {_pct(val[s])}' for s in [rec, *tied])} lie within "
                f"{100 * c['validation_noise']:.0f} points, the {'paired ' if c.get('paired') else ''}noise of "
                f"{c['n_val']} validation items); they share one network and cost the same to serve, so the better "
                "validation score decides; chosen without looking at the test set.")
    else:
        text = (f"it had the highest validation {words} of the arms headstart exports ({_pct(val[rec])}; chosen "
                "without looking at the test set).")
    for s in c.get("passed_over_collapsed", []):
        text += (f" `{s}` ({_pct(val[s])} on validation) was passed over: it ignores a class on validation "
                 f"({collapse_words(results['strategies'][s].get('val_collapse') or {}, 'validation')}).")
    best = c.get("best_on_validation", rec)
    if best != rec and best not in c.get("tied_within_noise", []):
        text += (f" `{best}` scored higher on validation ({_pct(val[best])}), but it is a baseline headstart does not "
                 "export for `predict`.")
    for s in c.get("kept_starting_weights", []):
        text += (f" `{s}` did not move: no epoch improved its validation loss on its starting weights (the linear "
                 "probe's head on the frozen backbone), so its numbers are the probe's; fine-tuning bought nothing "
                 "here.")
    return text


def assessment_lines(results: dict) -> list[str]:
    """Predicted (before training) beside measured (after): so a wrong verdict is visible."""
    a = results.get("assessment")
    if not a:
        return []
    if "failed" in a:
        return ["## Before training: predicted vs measured", "",
                f"The assessment failed ({a['failed']}); the arms trained without it.", ""]
    c, v, sc = a["check"], a["verdict"], a["scores"]
    held = {True: "yes", False: "**no**", None: "—"}
    fmt = lambda k: "—" if sc.get(k) is None else f"{sc[k]:.3f}"  # noqa: E731
    rows = []
    for key, what in (("vs_scratch", "transfer vs the same network from scratch"),
                      ("vs_classic", "transfer vs the classic baseline")):
        r = (c.get("rows") or {}).get(key)
        if not r or r["predicted"] is None:
            continue
        measured = r["measured"]
        if "difference" in r:
            measured += (f" (`{c['best_transfer']}` − `{r['baseline']}`: {100 * r['difference']:+.1f} pts, "
                         f"{_ci(r['ci'])}" + ("; scratch stopped by racing, so a bound" if r.get("bounded") else "")
                         + ")")
        rows.append([what, r["predicted"], measured, held[r["agrees"]]])
    rows.append(["try first", v["try_first"], f"best transfer arm on validation: {c['best_transfer']}",
                 held[c.get("try_first_agrees")]])
    return ["## Before training: predicted vs measured", "",
            _table(["", "predicted (assessment)", "measured (this run)", "held?"], rows), "",
            f"Assessment of `{a['backbone']}` on the {a['n_items']} train+val items ({a['seconds']:.1f} s): LogME "
            f"{fmt('logme')}, H-score {fmt('hscore')}, LEEP {fmt('leep')}, NCE {fmt('nce')}; "
            f"why `{v['try_first']}` first: {v['why']}.", "", *[f"- {e}" for e in v["evidence"]], ""]


def leakage_lines(results: dict) -> list[str]:
    lk = results.get("leakage")
    if not lk:
        return []
    c = lk["counts"]
    lines = ["## Duplicates and leaks (checked before training)", "",
             f"{c['leak']} pair(s) across splits (leaks), {c['conflict']} with conflicting labels, {c['duplicate']} "
             f"within a split; {c['exact']} exact (same content hash), {c.get('normalised', 0)} normalised (same "
             f"text ignoring case, punctuation and spacing), {c['near']} near (frozen-feature cosine "
             f">= {lk['threshold']:.3f})" + (f", of which {c['similar']} are only *similar*: close in embedding, "
                                          "listed last, never counted as leaks or conflicts" if c.get("similar") else "")
             + "."]
    if lk.get("near_skipped"):
        lines.append(lk["near_skipped"][0].upper() + lk["near_skipped"][1:] + ".")
    if lk.get("removed_from_train") is not None:
        lines.append(f"`--dedupe` removed {len(lk['removed_from_train'])} train item(s) before training.")
    elif c["leak"] or c["conflict"]:
        lines.append("Test scores may be optimistic (leaks) or capped (conflicts); `--dedupe` drops the train side.")
    lines.append("")
    if lk["pairs"]:
        lines += [_table(["kind", "match", "similarity", "item", "split / label", "item", "split / label"],
                         [[p["kind"], p["match"], f"{p['similarity']:.3f}", f"`{p['a']}`",
                           f"{p['roles'][0]} / {p['labels'][0]}", f"`{p['b']}`", f"{p['roles'][1]} / {p['labels'][1]}"]
                          for p in lk["pairs"][:30]]), ""]
        if lk["all_pairs"] > 30:
            lines += [f"… {lk['all_pairs'] - 30} more pair(s) in results.json (first {len(lk['pairs'])}).", ""]
    return lines


def verdict_card(results: dict) -> list[str]:
    """The answer in five lines, before the paragraph that argues it: what to deploy, its test score, what it gains
    over scratch and over the classic baseline, what it saves in labels, what it costs to train."""
    rec = results["recommended"]
    m, ok = results["strategies"][rec], {s: v for s, v in results["strategies"].items() if "failed" not in v}
    deltas = results.get("paired_differences", {})
    t = rec if rec in TRANSFER else best_arm(results, TRANSFER)
    rows = [["deploy", f"**`{rec}`** ({STRATEGIES[rec].label})"],
            ["test " + ("accuracy" if metric_name(results) == "accuracy" else metric_label(results)),
             f"{_pct(score_of(m)[0])} {_ci(score_of(m)[1])}, n={m['n_test']}"]]
    if metric_name(results) != "accuracy":
        rows.append(["test accuracy", f"{_pct(m['accuracy'])} {_ci(m['accuracy_ci'])}"])
    for s, v in ok.items():
        if collapsed(v):
            rows.append([f"`{s}` collapsed", collapsed(v)])
    for base in BASELINES:
        d = deltas.get(f"{t} - {base}") if t else None
        if d and base in ok:
            word = ("wins" if d["difference"] > 0 else "loses") if d["significant"] else "within noise"
            rows.append([f"`{t}` vs {base}", f"{100 * d['difference']:+.1f} points {_ci(d['ci'])}: {word}"
                         + ("" if metric_name(results) == "accuracy" else f" ({metric_label(results)})")
                         + (" (scratch stopped by racing: a bound)" if _bounded(ok[base]) else "")])
    saved = labels_saved_cell(results)
    if saved:
        rows.append(["labels saved vs scratch", saved])
    if m.get("compute"):
        rows.append(["training cost", f"{m['compute']['wall_seconds']:.0f} s "
                                      f"({_money(m['compute']['money'])} at ${m['compute']['price_per_hour']:g}/h)"])
    return [_table(["verdict", ""], rows), ""]


def render_markdown(results: dict) -> str:
    d = results["data"]
    lines = [f"# headstart report: {d['root']}", "", *verdict_card(results), recommendation(results), "",
             *metric_lines(results),
             "## Results (test split, used once)", "", _table(summary_header(results), summary_rows(results)), "",
             *racing_lines(results)]
    deltas = results.get("paired_differences", {})
    if deltas:
        lines += ["### Transfer − scratch (paired over the same test images)", "",
                  _table(["comparison", f"{metric_label(results)} difference", "95% CI", "beyond noise?"],
                         [[k + (f" ({NETWORK_BASELINE} bounded)" if k.endswith(NETWORK_BASELINE) and _bounded(
                             results["strategies"].get(NETWORK_BASELINE, {})) else ""), f"{100 * v['difference']:+.1f} pts",
                           _ci(v["ci"]), "yes" if v["significant"] else "no"] for k, v in deltas.items()]), ""]
    lines += assessment_lines(results)
    lines += savings_lines(results, results.get("plots", {}))
    lines += ["### Per-class recall", "",
              _table(["strategy"] + [f"{c} (n={n})" for c, n in d["counts"]["test"].items()],
                     [[s] + [_pct(m["per_class_recall"][c]) if d["counts"]["test"].get(c, 1) else "no test items"
                             for c in d["classes"]]
                      for s, m in results["strategies"].items() if "failed" not in m]), ""]
    rec = results["recommended"]
    conf = results["strategies"][rec]["confusion"]
    lines += [f"### Confusion matrix of `{rec}` (test items; rows: true class, columns: predicted; seed 0)", "",
              _table(["true \\ predicted"] + d["classes"] + ["items", "recall"],
                     [[f"**{c}**"] + [f"**{n}**" if i == j else (str(n) if n else "·") for j, n in enumerate(row)]
                      + [str(sum(row)), _pct(row[i] / sum(row)) if sum(row) else "—"]
                      for i, (c, row) in enumerate(zip(d["classes"], conf))]), "",
              "Bold: right; · : none.", ""]
    lines += ["## Data", "", f"{d['n_items']} {d.get('modality', '')} items, {len(d['classes'])} classes, layout: {d['layout']}.", "",
              _table(["role", "source", "images"] + d["classes"],
                     [[r, d["roles"][r], sum(d["counts"][r].values())] + [d["counts"][r][c] for c in d["classes"]]
                      for r in ("train", "val", "test")]), ""]
    lines += leakage_lines(results)
    if d["skipped"]:
        lines += [f"**{len(d['skipped'])} file(s) skipped** (unreadable):", ""]
        lines += [f"- `{s['path']}`: {s['reason']}" for s in d["skipped"][:50]]
        if len(d["skipped"]) > 50:
            lines.append(f"- … and {len(d['skipped']) - 50} more (all in results.json)")
        lines.append("")
    lines += training_lines(results)
    lines += ["", f"Recommendation basis: {results['recommendation_basis']}.", ""]
    lines += next_steps_lines(results)
    cfg = results["config"]
    lines += ["## Reproduce", "", "Every setting is in this run's `config.json` (the split in `split.json`):", "",
              "```", f"headstart run {cfg['data']} --config {cfg['out']}/config.json --out <new folder>", "```",
              "With the same `--out` the command resumes instead; finished units are reused.", "",
              "## Recommendation", "", recommendation(results), ""]
    return "\n".join(lines)
