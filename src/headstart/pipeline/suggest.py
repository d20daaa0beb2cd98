"""`headstart suggest`: which unlabelled items to label next, from a finished run's frozen features and probe.

    res = suggest_items("runs/x", ["unlabelled/"], n=50)    # {"rows": [...], "skipped": [...], ...}

The run's labelled data and saved split are reloaded (the same checks as a resumed run), its backbone embeds the
unlabelled items through the same frozen pass (disk-cached, so a second call is quick), and the run's linear probe
(train + val head) gives each item's class probabilities. stats/active.select ranks them. Items whose content
equals a labelled item, or an earlier unlabelled one, are listed as skipped, never suggested twice. The ranked
items also get the exported model's prediction (deployed_predicted), which is what `headstart predict` says.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from headstart.core.config import RunConfig
from headstart.pipeline.state import Timings
from headstart.core.comparison import Comparison
from headstart.core.errors import UserError
from headstart.core.io import read_json
from headstart.core.sections import Suggestions
from headstart.models.factory import load_folder
from headstart.models.weights import META
from headstart.pipeline.arms import predict_probs
from headstart.pipeline.context import build_context
from headstart.pipeline.frozen import features, probe
from headstart.stats.active import KINDS, select
from headstart.stats.evaluate import softmax

COLUMNS = ["rank", "item", "score", "why", "predicted", "probability", "runner_up", "runner_up_probability",
           "uncertainty", "gap", "deployed_predicted", "deployed_probability"]


def resolve_run_dir(run_dir: str | Path, log=print) -> Path:
    """A run folder, or for the folder `headstart run --backbones` wrote (comparison.json), the run of the backbone
    it recommends (its model/ is the deployed one)."""
    run_dir = Path(run_dir)
    if (run_dir / "comparison.json").is_file() and not (run_dir / "config.json").is_file():
        cmp = Comparison.from_dict(read_json(run_dir / "comparison.json"))
        pick = cmp.recommendation.recommended
        if not pick or pick not in cmp.rows or not Path(cmp.rows[pick].run).is_dir():
            raise UserError(f"{run_dir} is a backbone comparison without a finished recommended run; pass one of its "
                            "run folders")
        log(f"{run_dir} compares backbones: suggesting with the recommended one, {pick} ({cmp.rows[pick].run})")
        return Path(cmp.rows[pick].run)
    return run_dir


def load_run(run_dir: str | Path, progress=None, log=print):
    """The context of a finished (or running) run folder, read-only: its config, data and saved split."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "split.json").is_file():
        raise UserError(f"{run_dir} is not a headstart run folder (no config.json and split.json); pass the folder "
                        "`headstart run` wrote (its --out)")
    cfg = dataclasses.replace(RunConfig.load(run_dir / "config.json"), devices=1, out=str(run_dir))
    return build_context(cfg, progress, log, run_dir=run_dir, lock=False)


def suggest_items(run_dir: str | Path, inputs: list[str], n: int = 50, kind: str = "margin",
                  random_share: float = 0.2, seed: int = 0, progress=None, log=print) -> dict:
    if kind not in KINDS:
        raise UserError(f"--uncertainty {kind!r} unknown; choose {', '.join(KINDS)}")
    if not 0 <= random_share <= 1:
        raise UserError(f"--random-share {random_share} must lie in [0, 1]")
    if n < 1:
        raise UserError(f"--n {n} must be at least 1")
    missing = [s for s in inputs if not Path(s).exists()]
    if missing:
        raise UserError(f"unlabelled input {missing[0]!r} does not exist; pass a folder or file of unlabelled items")
    ctx = load_run(run_dir, progress, log)
    pool = ctx.modality.read_unlabelled(inputs, ctx.spec, ctx.size)
    pool, skipped = _drop_known(pool, ctx.ds)
    if not pool.paths:      # said before any feature pass
        raise UserError(f"no usable unlabelled items in {', '.join(inputs)}"
                        + (f" ({len(skipped)} skipped; first: {skipped[0]['path']}: {skipped[0]['reason']})"
                           if skipped else "") + f"; pass {ctx.modality.name} items this run has not labelled yet")
    labelled = ctx.split["train"] + ctx.split["val"]          # what the probe learned from (test stays out)
    feats_l = features(ctx)[labelled]
    p = probe(ctx)
    sub = dataclasses.replace(ctx, ds=pool, state=ctx.modality.prepare(pool, ctx.spec, ctx.size, ctx.cfg),
                              features=None, probe=None, timings=Timings())
    feats_u = features(sub)
    probs = softmax(p.logits(feats_u))
    picks = select(feats_u, probs, feats_l, n, random_share, kind, seed=seed)
    classes = ctx.ds.classes
    strategy, said = deployed_predictions(ctx, sub, [pk.index for pk in picks]) or (None, [])
    rows = []
    for rank, pk in enumerate(picks, 1):
        order = np.argsort(-probs[pk.index])
        top, second = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
        rows.append({"rank": rank, "item": pool.paths[pk.index], "score": round(pk.score, 4), "why": pk.why,
                     "predicted": classes[top], "probability": round(float(probs[pk.index, top]), 4),
                     "runner_up": classes[second], "runner_up_probability": round(float(probs[pk.index, second]), 4),
                     "uncertainty": round(pk.uncertainty, 4), "gap": round(pk.gap, 4)})
        if said:
            rows[-1]["deployed_predicted"], rows[-1]["deployed_probability"] = said[rank - 1]
    return Suggestions.from_dict({
        "rows": rows, "pool": len(pool.paths), "skipped": skipped, "labelled": len(labelled), "kind": kind,
        "random_share": random_share, "seed": seed, "inputs": [str(Path(s).resolve()) for s in inputs],
        "model": f"linear probe (C={p.C:g}, fitted on the run's train + val labels) on frozen {ctx.cfg.backbone} "
                 "features", "deployed": strategy})


def deployed_predictions(ctx, sub, indices: list[int]) -> tuple[str, list[tuple[str, float]]] | None:
    """(strategy, [(label, probability)]) of the run's exported model/ on the ranked items: what `headstart predict`
    says of them, which can differ from the probe that ranks them (a fine-tuned model deployed, or the probe's C and
    labels). None when the run exported no model."""
    folder = ctx.run_dir / "model"
    if not (folder / META).is_file() or not indices:
        return None
    try:
        model, spec, classes, meta = load_folder(folder)
    except UserError as e:      # the ranking does not need it: say why the columns are empty, rank anyway
        ctx.log(f"the deployed columns stay empty: {e}")
        return None
    probs = predict_probs(model, sub, indices, size=spec.input_size)
    top = probs.argmax(1)
    return meta.get("strategy", "exported model"), [(classes[k], round(float(p[k]), 4)) for p, k in zip(probs, top)]


def _drop_known(pool, labelled):
    """The pool without items whose content equals a labelled item or an earlier pool item (listed as skipped)."""
    known = {h: f"a labelled item ({p})" for h, p in zip(labelled.hashes, labelled.paths)}
    keep, skipped = [], list(pool.skipped)
    for i, h in enumerate(pool.hashes):
        if h in known:
            skipped.append({"path": pool.paths[i], "reason": f"same content as {known[h]}"})
        else:
            known[h] = f"another unlabelled item ({pool.paths[i]})"
            keep.append(i)
    if len(keep) == len(pool.paths):
        return pool, skipped
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    items = pool.items.subset(keep) if hasattr(pool.items, "subset") else pick(pool.items)     # images: ImageFiles
    return dataclasses.replace(pool, paths=pick(pool.paths), items=items, labels=pick(pool.labels),
                               sources=pick(pool.sources), hashes=pick(pool.hashes), skipped=skipped), skipped
