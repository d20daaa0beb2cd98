"""Stratified train/val/test split with a fixed seed, saved as file lists (split.json) in the run folder.

Roles: `train` fits weights, `val` drives every choice (early stopping, probe C, which strategy to deploy),
`test` is touched once, for the final numbers. With user folders:
- train/ + val/ + test/: used as given;
- train/ + test/: val is carved from train/;
- train/ + val/ (no test/, like hymenoptera): the given val/ is the held-out *test* set and val is carved from train/;
- train/ only, or folder-per-class: val and test are both carved, stratified.
"""
from __future__ import annotations

from pathlib import Path

import warnings

import numpy as np

from headstart.core.errors import UserError
from headstart.core.io import read_json, write_json


MIN_EVAL = 3     # a rare class gets at least this many carved items (while it keeps twice as many), not round(frac n)


def _carve(idx: np.ndarray, labels: np.ndarray, frac: float, seed: int, what: str, classes: list[str],
           groups: np.ndarray | None = None):
    """Split idx into (keep, carved) stratified by label; every class keeps >=1 in each part, and a rare class gets
    at least MIN_EVAL carved items where it has 3 x MIN_EVAL (a 20% share of 12 items would be 2: a recall of 0, 50
    or 100%). With groups (patient, speaker, session), whole groups go to one side: one fold of scikit-learn's
    StratifiedGroupKFold."""
    if groups is not None:
        return _carve_groups(idx, labels, frac, seed, what, groups)
    rng = np.random.default_rng(seed)
    keep, carved = [], []
    for c in np.unique(labels[idx]):
        members = idx[labels[idx] == c]
        if len(members) < 2:
            raise UserError(f"class {classes[c]!r} has {len(members)} usable item(s) left for the {what} split; "
                            f"needs at least 2 (one to train on, one for {what}): add items or merge classes")
        members = rng.permutation(members)
        k = min(len(members) - 1, max(1, int(round(frac * len(members))), min(MIN_EVAL, len(members) // 3)))
        carved += members[:k].tolist()
        keep += members[k:].tolist()
    return sorted(keep), sorted(carved)


def _carve_groups(idx: np.ndarray, labels: np.ndarray, frac: float, seed: int, what: str, groups: np.ndarray):
    from sklearn.model_selection import StratifiedGroupKFold
    n_groups = len(set(groups[idx].tolist()))
    folds = max(2, min(n_groups, int(round(1 / max(frac, 1e-6)))))
    if n_groups < 2:
        raise UserError(f"the {what} split needs at least 2 groups, found {n_groups}; check --group-col")
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():          # a class with fewer groups than folds: scikit-learn warns, we report
        warnings.simplefilter("ignore")
        keep, carved = next(cv.split(idx, labels[idx], groups[idx]))
    return sorted(idx[keep].tolist()), sorted(idx[carved].tolist())


def make_split(sources: list[str], labels: list[int], classes: list[str], val_fraction: float,
               test_fraction: float, seed: int, groups: list[str] | None = None) -> dict:
    """Return {"train": [...], "val": [...], "test": [...], "roles": {...}} of indices into the dataset.
    groups: one id per item (--group-col); carved splits then never share a group."""
    g = np.asarray(groups) if groups else None
    carve = lambda *a: _carve(*a, groups=g)  # noqa: E731
    how = "stratified by class, whole groups" if g is not None else "stratified"
    labels_a = np.asarray(labels)
    src = np.asarray(sources)
    have = set(sources)
    counts = {classes[c]: int((labels_a == c).sum()) for c in range(len(classes))}
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise UserError(f"class(es) {empty} have no usable items; add items of them or remove them")
    if have == {""}:
        need = 3
        small = {c: n for c, n in counts.items() if n < need}
        if small:
            c, n = next(iter(small.items()))
            raise UserError(f"class {c!r} has {n} item(s); needs at least {need} to split into train/val/test "
                            "(add items of it, or give your own train/ and test/ folders or a --test-file)")
    roles = {"train": "train/" if "train" in have else "carved from all items"}
    pool = np.flatnonzero((src == "train") | (src == ""))
    if "test" in have:
        test = np.flatnonzero(src == "test").tolist()
        roles["test"] = "test/ (given)"
        if "val" in have:
            val = np.flatnonzero(src == "val").tolist()
            train = pool.tolist()
            roles["val"] = "val/ (given)"
        else:
            train, val = carve(pool, labels_a, val_fraction, seed, "validation", classes)
            roles["val"] = f"carved from train/ ({val_fraction:.0%}, {how}, seed {seed})"
    elif "val" in have:
        test = np.flatnonzero(src == "val").tolist()
        roles["test"] = "val/ (given; used as the held-out test set, never for choices)"
        train, val = carve(pool, labels_a, val_fraction, seed, "validation", classes)
        roles["val"] = f"carved from train/ ({val_fraction:.0%}, {how}, seed {seed})"
    else:
        rest, test = carve(pool, labels_a, test_fraction, seed, "test", classes)
        train, val = carve(np.asarray(rest), labels_a, val_fraction / (1 - test_fraction), seed + 1,
                            "validation", classes)
        roles["test"] = f"carved ({test_fraction:.0%}, {how}, seed {seed})"
        roles["val"] = f"carved ({val_fraction:.0%}, {how}, seed {seed + 1})"
    if g is not None:
        roles["groups"] = f"{len(set(g.tolist()))} groups; no group spans two carved splits"
    return {"train": list(train), "val": list(val), "test": list(test), "roles": roles}


def save_split(path: str | Path, split: dict, paths: list[str], labels: list[int], classes: list[str],
               hashes: list[str] | None = None) -> None:
    """split.json: the roles, each split's (path, class), and the content hash of every item that was read, so a
    resumed run can tell whether the data changed underneath it."""
    write_json(path, {
        "classes": classes,
        "roles": split["roles"],
        **{r: [[paths[i], classes[labels[i]]] for i in split[r]] for r in ("train", "val", "test")},
        **({"hashes": dict(zip(paths, hashes))} if hashes is not None else {}),
    })


def load_split(path: str | Path, paths: list[str], labels: list[int], classes: list[str],
               hashes: list[str] | None = None) -> dict:
    """Map a saved split back onto the dataset's indices; refuse if the data changed underneath: an item missing,
    relabelled, added, or with other content than when the run started (split.json keeps every item's hash)."""
    saved = read_json(path, fix="the split the finished units trained on cannot be read back: start a new --out "
                            "folder (or restore the file)")
    _refuse_changes(path, saved, paths, classes, hashes)
    index = {p: i for i, p in enumerate(paths)}
    out = {"roles": saved["roles"]}
    for r in ("train", "val", "test"):
        idx = []
        for p, cname in saved[r]:
            i = index.get(p)
            if i is None or classes[labels[i]] != cname:
                raise UserError(f"the saved split {path} lists {p!r} ({cname}) which is missing or relabelled in "
                                "the data folder; the data changed since this run started: use a new --out folder")
            idx.append(i)
        out[r] = idx
    return out


def _refuse_changes(path, saved: dict, paths: list[str], classes: list[str], hashes: list[str] | None) -> None:
    fix = "the data changed since this run started: use a new --out folder (or restore the data)"
    if saved.get("classes") and saved["classes"] != classes:
        new = sorted(set(classes) - set(saved["classes"])) or sorted(set(saved["classes"]) - set(classes))
        raise UserError(f"{path}: the classes differ from the data folder's ({new[:5]}); {fix}")
    known = {p for r in ("train", "val", "test") for p, _ in saved[r]}
    added = [p for p in paths if p not in known]
    if added:
        raise UserError(f"{path}: {len(added)} item(s) in the data are not in this run's split (first: {added[0]!r}); "
                        f"{fix}")
    if hashes is not None and "hashes" in saved:
        changed = [p for p, h in zip(paths, hashes) if saved["hashes"].get(p, h) != h]
        if changed:
            raise UserError(f"{path}: {len(changed)} item(s) have other content than when the run started (first: "
                            f"{changed[0]!r}); {fix}")
