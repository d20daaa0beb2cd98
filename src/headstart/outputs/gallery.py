"""The error gallery: what the deployed model gets wrong on test, which classes it mixes up, and where transfer and
scratch disagree (the items the paired difference is made of). Read from the run's predictions.csv.

    results.gallery = make_gallery(results, run_dir)   # thumbnails (images) / spectrograms (audio) under plots/

The report section is outputs/report_gallery.py (kept apart: the CLI's --help must not load the modalities).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from headstart.core.io import atomic_write_bytes
from headstart.core.run_results import RunResults
from headstart.core.sections import Gallery, GalleryItem, Prediction
from headstart.modalities import MODALITIES
from headstart.training.strategies import NETWORK_BASELINE, STRATEGIES

MISTAKES = 8          # the deployed arm's most confident wrong answers shown
DISAGREE = 6          # items where transfer and scratch disagree, shown
THUMB = 96            # pixels (longest side)


def make_gallery(results: RunResults, run_dir: Path) -> Gallery | None:
    arm = results.model.strategy if results.model else results.recommended
    seed = results.model.seed if results.model else 0
    test = results.prediction_records(split="test")
    mine = [p for p in test if p.strategy == arm and p.seed == seed]
    if not mine:
        return None
    wrong = sorted((p for p in mine if not p.correct), key=lambda p: -p.confidence)[:MISTAKES]
    out = Path(run_dir) / "plots"
    out.mkdir(exist_ok=True)
    for old in out.glob("gallery-*.png"):
        old.unlink()
    mistakes = [_item(p, k, results.data.modality, Path(results.data.root), out) for k, p in enumerate(wrong, 1)]
    g = Gallery(arm=arm, seed=seed, mistakes=mistakes, wrong=sum(not p.correct for p in mine), n_test=len(mine),
                confused=_confused(mine))
    other = NETWORK_BASELINE if arm != NETWORK_BASELINE else results.best_arm([s for s in results.ok
                                                                                 if STRATEGIES[s].transfer])
    theirs = {p.item: p for p in test if p.strategy == other and p.seed == 0}
    if other and theirs:
        mine0 = {p.item: p for p in test if p.strategy == arm and p.seed == 0}
        split = [(m, theirs[i]) for i, m in mine0.items() if i in theirs and m.correct != theirs[i].correct]
        split.sort(key=lambda mt: (mt[0].correct, -mt[1].confidence))        # where the deployed arm lost, first
        g.versus = other
        g.only_mine, g.only_theirs = sum(m.correct for m, _ in split), sum(t.correct for _, t in split)
        g.disagreements = [GalleryItem(item=m.item, text=m.text, true=m.true, predicted=m.predicted,
                                       probability=m.confidence, other=t.predicted, other_probability=t.confidence)
                           for m, t in split[:DISAGREE]]
    return g


def _confused(rows: list[Prediction]) -> list[dict]:
    pairs = Counter((p.true, p.predicted) for p in rows if not p.correct)
    return [{"true": t, "predicted": p, "items": n} for (t, p), n in pairs.most_common(5)]


def _item(p: Prediction, k: int, modality: str, root: Path, out: Path) -> GalleryItem:
    it = GalleryItem(item=p.item, text=p.text, true=p.true, predicted=p.predicted, probability=p.confidence)
    src = Path(p.item) if Path(p.item).is_absolute() else root / p.item
    try:
        png = MODALITIES[modality]().picture(src, THUMB) if modality in MODALITIES else None
    except Exception:           # an unreadable file shows as its name: the gallery never stops a report
        png = None
    if png:
        atomic_write_bytes(out / f"gallery-{k}.png", png)
        it.picture = f"plots/gallery-{k}.png"
    return it
