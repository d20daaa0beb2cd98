"""Does `headstart suggest` pick better items to label than random? Simulated annotation rounds (issue 14).

    python benchmarks/active_learning.py                     # hymenoptera, fsdd, trec (shared sets; skips if absent)
    python benchmarks/active_learning.py hymenoptera --rounds 5 --seeds 3
    python benchmarks/active_learning.py trec fsdd --step 0.02     # small budgets: start at 2%, +2% per round

Each set's default `headstart run` split is made (train / val / test, the run's own code), and its frozen features
come from the same cache. The training split is the unlabelled pool: a seeded, stratified 10% of it starts labelled,
and every round each rule adds another 10% of the pool; the model after each round is the run's linear probe (C
chosen on val, fitted on the labelled items only, so the label counts are every label the model learned from; val
is tuning data, the same for every rule). Rules: `suggest` (the command's rule: margin x capped coverage, 20%
random), `suggest-uncapped` (coverage = the raw distance: the first version), `margin` (the most uncertain only),
`random`. Printed: test
accuracy per round (mean of the seeds) and suggest - random with a 95% CI from a paired bootstrap over test items
(the seeds' differences averaged in every resample). The test split is used for nothing else.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bf16_parity import DATA  # noqa: E402
from fsdd import official_split  # noqa: E402
from trec import to_csv  # noqa: E402

RULES = ("suggest", "suggest-uncapped", "margin", "random")


def context(name: str, tmp: Path):
    from headstart.core.config import RunConfig
    from headstart.pipeline.context import build_context
    if name == "trec":
        to_csv(DATA / "trec" / "train_5500.label", tmp / "train.csv")
        to_csv(DATA / "trec" / "TREC_10.label", tmp / "test.csv")
        cfg = RunConfig(data=str(tmp / "train.csv"), test_file=str(tmp / "test.csv"), out=str(tmp / "run"))
    elif name == "fsdd":            # the official split: recordings 0-4 of every speaker are test
        cfg = RunConfig(data=str(official_split(tmp / "fsdd")), out=str(tmp / "run"))
    else:
        cfg = RunConfig(data=str(DATA / name), out=str(tmp / "run"))
    return build_context(cfg, log=lambda *a: None)


def simulate(ctx, rules=RULES, seeds: int = 3, rounds: int = 5, step: float = 0.1) -> dict:
    """{rule: {seed: [(labels, test probabilities)] per round}}."""
    from headstart.pipeline.frozen import features
    from headstart.stats.active import select
    from headstart.stats.curve import nested_subset
    from headstart.stats.evaluate import softmax
    from headstart.stats.probe import fit_probe
    feats, y = features(ctx), np.asarray(ctx.ds.labels)
    pool, val, test = ctx.split["train"], ctx.split["val"], ctx.split["test"]
    n_classes, per_round = len(ctx.ds.classes), int(round(step * len(pool)))
    out = {r: {} for r in rules}
    for rule in rules:
        for seed in range(seeds):
            labelled = nested_subset(pool, ctx.ds.labels, step, seed)
            curve = []
            for k in range(rounds):
                p = fit_probe(feats, y, {"train": labelled, "val": val}, ctx.cfg.probe_cs, n_classes, seed,
                              refit_on_val=False, rebalance=ctx.decision.rebalance)       # as in a run
                curve.append((len(labelled), softmax(p.logits(feats[test]))))
                if k == rounds - 1:
                    break
                rest = np.setdiff1d(pool, labelled)
                if rule == "random":
                    add = np.random.default_rng([seed, k]).choice(rest, per_round, replace=False)
                else:
                    probs = softmax(p.logits(feats[rest]))
                    picks = select(feats[rest], probs, feats[labelled], per_round,
                                   random_share=0.0 if rule == "margin" else 0.2, seed=seed * 1000 + k,
                                   pool_factor=1 if rule == "margin" else 10,
                                   cap=None if rule == "suggest-uncapped" else 1.0)
                    add = rest[[q.index for q in picks]]
                labelled = sorted(labelled + [int(i) for i in add])
            out[rule][seed] = curve
    return out


def table(ctx, sims: dict, reps: int = 2000) -> str:
    from headstart.stats.metrics import item_weights
    y = np.asarray(ctx.ds.labels)[ctx.split["test"]]
    rules = list(sims)
    seeds = sorted(sims[rules[0]])
    rows = ["| labels | " + " | ".join(rules) + " | suggest − random (95% CI) |", "|" + "---|" * (len(rules) + 2)]
    rng = np.random.default_rng(0)
    for k in range(len(sims[rules[0]][seeds[0]])):
        # per-item credit in the run's decision metric (balanced accuracy on imbalanced data: n / (k n_c) x right)
        w = item_weights(ctx.decision.metric, y, len(ctx.ds.classes))
        w = np.ones(len(y)) if w is None else w
        right = {r: np.stack([(sims[r][s][k][1].argmax(1) == y) * w for s in seeds]).astype(float) for r in rules}
        n = sims[rules[0]][seeds[0]][k][0]
        diff = (right["suggest"] - right["random"]).mean(0)     # per test item, averaged over seeds
        boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(reps)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        cells = [f"{100 * right[r].mean():.1f}%" for r in rules]
        rows.append(f"| {n} | " + " | ".join(cells)
                    + f" | {100 * diff.mean():+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |")
    return "\n".join(rows)


def main():
    args = sys.argv[1:]
    rules = tuple(args[args.index("--rules") + 1].split(",")) if "--rules" in args else RULES
    opt = lambda k, d: type(d)(args[args.index(k) + 1]) if k in args else d  # noqa: E731
    names = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or not args[i - 1].startswith("--"))]
    if not (DATA / "hymenoptera").exists():
        print(f"skip: {DATA} not present")
        return
    for name in names or ["hymenoptera", "fsdd", "trec"]:
        with tempfile.TemporaryDirectory() as t:
            t0 = time.perf_counter()
            ctx = context(name, Path(t))
            sims = simulate(ctx, rules, seeds=opt("--seeds", 3), rounds=opt("--rounds", 5), step=opt("--step", 0.1))
            print(f"\n{name}: pool {len(ctx.split['train'])} training items, {len(ctx.split['val'])} val, "
                  f"{len(ctx.split['test'])} test; {time.perf_counter() - t0:.0f} s\n")
            print(table(ctx, sims), flush=True)


if __name__ == "__main__":
    main()
