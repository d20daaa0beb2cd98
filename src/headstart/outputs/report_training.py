"""The report's "How each arm was trained" section: one policy table (settings x arms), then what happened in each
trained arm (unfreezing, progressive resizing, the trunk cache). No torch.

    lines = training_lines(results)
"""
from __future__ import annotations

from headstart.core.run_results import RunResults
from headstart.outputs.common import table as _table
from headstart.training.strategies import STRATEGIES, Strategy

LABELS = {"pretrained": "starts from pretrained weights", "bn_policy": "BatchNorm", "patience": "early-stopping "
          "patience (epochs)", "min_epochs": "epochs before early stopping may end it", "head_init": "head starts as",
          "schedule": "unfreezing schedule", "lr_by_depth": "learning rate by depth (0 = head)",
          "groups": "block groups (head first)", "C": "regularisation C (chosen)", "C_grid": "C searched",
          "chosen_by": "chosen by", "features": "features", "precision": "precision", "budget": "epoch budget",
          "epochs_run": "epochs run (per seed)", "best_epochs": "best-validation epoch kept (-1 = start)"}


def _value(v) -> str:
    """Readable cell: lists joined, dicts as key: value, a schedule as "epoch 0: 1 group; epoch 1: 2"."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_value(x)}" for k, x in v.items())
    if isinstance(v, list) and v and all(isinstance(x, dict) and "epoch" in x for x in v):
        return "; ".join(f"epoch {x['epoch']}: " + ", ".join(f"{_value(val)} {k.replace('_', ' ')}"
                                                             for k, val in x.items() if k != "epoch") for x in v)
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v).replace("|", "/")


def policy_table(results: RunResults) -> str:
    results = RunResults.of(results)
    arms = results.ok
    cols = {}
    for s, m in arms.items():
        pol = {k: v for k, v in m.policy.items() if k != "strategy"}
        if m.epoch_budget:
            pol.update(precision=m.precision or "", budget=m.epoch_budget, epochs_run=m.epochs_run,
                       best_epochs=m.best_epochs)
        cols[s] = pol
    keys = list(dict.fromkeys(k for pol in cols.values() for k in pol))
    return _table(["setting", *arms], [[LABELS.get(k, k.replace("_", " "))] + [_value(cols[s][k]) if k in cols[s]
                                                                             else "—" for s in arms] for k in keys])


def training_lines(results: RunResults) -> list[str]:
    results = RunResults.of(results)
    b = results.backbone
    lines = ["## How each arm was trained", "",
             f"Backbone `{b.name}` (architecture `{b.arch}`, weights: {b.source}), "
             f"{results.input or f'input {results.image_size} px'}, normalisation mean "
             f"{tuple(round(x, 3) for x in b.mean)}, std {tuple(round(x, 3) for x in b.std)}. Same split and "
             "seeds for every arm.", "", policy_table(results), ""]
    for s, m in results.ok.items():
        if not m.epoch_budget:
            continue
        notes = list(m.events)
        for r in m.input_sizes or []:
            runs = ", then ".join(f"{px} px for {n} epoch{'s' * (n > 1)}" for px, n in r["epochs_at_size"])
            notes.append(f"seed {r['seed']}: progressive resizing, {runs}; evaluated at {r['eval_size']} px (the "
                         "size its kept weights trained at)")
        if m.best_epochs and m.epochs_run and all(b == m.epoch_budget - 1 for b in m.best_epochs) \
                and all(e == m.epoch_budget for e in m.epochs_run):
            flag = "--scratch-epochs" if not STRATEGIES.get(s, Strategy).pretrained else "--epochs"
            notes.append(f"still improving when its budget ended (best validation loss at its last "
                         f"{'round' if 'epoch' in m.policy else 'epoch'}): a larger `{flag}` may raise it")
        if m.trunk_cache:
            tc = m.trunk_cache
            stage = tc.first_trained_stage or f"blocks.{tc.first_trained_block}"
            notes.append(f"frozen trunk (everything below `{stage}`) computed once for {tc.views} cached augmented "
                         f"views per training image ({tc.seconds:.1f} s, {tc.dtype}); each epoch trained only the "
                         "top on one of those views (`\"trunk_views\": 0` in a --config file turns this off)")
        if notes:
            lines += [f"- **{s}**:", *[f"  - {n}" for n in notes]]
    return lines


EXECUTORS = {"local": "this process", "processes": "local worker processes (--jobs)", "ray": "a Ray cluster"}


def work_lines(results: RunResults) -> list[str]:
    """Where this invocation's time went (stages) and, for a parallel grid, how its units were spread over nodes:
    units per node, the grid's wall time against the sum of its units' times."""
    lines = []
    if results.stages:
        total = results.wall_seconds_this_invocation or sum(results.stages.values())
        rows = [[k, f"{v:.1f}", f"{100 * v / total:.0f}%" if total else ""]
                for k, v in sorted(results.stages.items(), key=lambda kv: -kv[1]) if v >= 0.05]
        lines += ["### Where the time went", "", f"Wall seconds per stage of this invocation ({total:.0f} s in "
                  "all; a stage run inside another is counted once, as itself):", "",
                  _table(["stage", "seconds", "share"], rows), ""]
    g = results.grid
    if g and g.executor != "local":
        lines += ["### How the work was spread", "",
                  f"{g.units} unit(s) on {EXECUTORS.get(g.executor, g.executor)}: {g.wall_seconds:.0f} s of wall time "
                  f"for {g.unit_seconds:.0f} s of unit time ({g.speedup:.1f}x)"
                  + (f"; {g.retried} unit(s) retried after their worker died" if g.retried else "") + ".", "",
                  _table(["node", "units"], [[n, str(k)] for n, k in sorted(g.nodes.items())]), ""]
    return lines[:-1]
