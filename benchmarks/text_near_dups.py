"""How close do distinct short texts sit in MiniLM's embedding? The evidence behind reporting text near pairs as
"similar" rather than as leaks or label conflicts.

    python benchmarks/text_near_dups.py          # TREC's 5452 training questions + 500 test questions, ~2 min on 2 cores

Builds a run context on TREC (the same loading and split as `headstart run`), computes the frozen MiniLM features,
and counts pairs per match (exact text, normalised text, embedding cosine at several floors), split by whether the
two questions carry the same label; prints a few different-label pairs at each cosine band, so a reader can judge
whether they are the same question.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bf16_parity import layout  # noqa: E402


def main():
    from headstart.core.config import RunConfig
    from headstart.pipeline.context import build_context
    from headstart.pipeline.frozen import features
    from headstart.stats.leakage import find_duplicates
    with tempfile.TemporaryDirectory() as t:
        args = layout("trec", Path(t))
        if args is None:
            print("skip: ../shared/data/trec not present")
            return
        cfg = RunConfig(data=args[0], test_file=args[2], out=str(Path(t) / "run"), assess=False)
        ctx = build_context(cfg, log=lambda *a: None)
        feats = features(ctx)
        print(f"{len(ctx.ds)} questions, {len(ctx.ds.classes)} classes")
        rep = find_duplicates(ctx.ds, ctx.split, None, 1.0)
        for m in ("exact", "normalised"):
            ps = [p for p in rep["_pairs"] if p["match"] == m]
            print(f"{m:>10}: {len(ps)} pairs, {sum(p['labels'][0] != p['labels'][1] for p in ps)} with different "
                  "labels")
        f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        sim = f @ f.T
        np.fill_diagonal(sim, -1)
        iu = np.triu_indices(len(f), 1)
        s, y = sim[iu], np.asarray(ctx.ds.labels)
        same = y[iu[0]] == y[iu[1]]
        exact = {(p["ia"], p["ib"]) for p in rep["_pairs"]}
        print(f"median nearest-neighbour cosine: {np.median(sim.max(1)):.3f}")
        print(f"{'cosine':>12}{'pairs':>8}{'same label':>12}{'different':>11}{'not exact/norm':>16}")
        bands = [(0.99, 1.01), (0.97, 0.99), (0.95, 0.97), (0.93, 0.95), (0.90, 0.93)]
        for lo, hi in bands:
            sel = (s >= lo) & (s < hi)
            new = sum((int(a), int(b)) not in exact for a, b in zip(iu[0][sel], iu[1][sel]))
            print(f"{lo:.2f}-{min(hi, 1):.2f}{sel.sum():>8}{(sel & same).sum():>12}{(sel & ~same).sum():>11}{new:>16}")
            diff = np.nonzero(sel & ~same)[0][:3]
            for k in diff:
                a, b = iu[0][k], iu[1][k]
                print(f"    {s[k]:.3f} [{ctx.ds.classes[y[a]]}] {ctx.ds.items[a][:60]!r} | "
                      f"[{ctx.ds.classes[y[b]]}] {ctx.ds.items[b][:60]!r}")


if __name__ == "__main__":
    main()
