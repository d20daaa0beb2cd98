"""Before training: duplicates and leaks across train/val/test, and the same item under two labels.

    report = find_duplicates(ctx.ds, ctx.split, feats, threshold=0.9)
    removed = dedupe_train(report, ctx.split)        # --dedupe: drop the offending train items

Exact duplicates share a content hash (file bytes for images, the text, the decoded samples for audio); normalised
ones share a looser key where the modality gives one (text: case, punctuation and spacing ignored).
Near-duplicates have frozen-feature cosine similarity >= max(threshold, 1 - RELATIVE x the median nearest-neighbour
distance 1 - cos): re-encoded, resized or lightly edited copies. Measured with Lite0 at 224 px (docs/reliability.md):
a photo re-saved at 90% size scores 0.944 with its original while the closest distinct hymenoptera photos reach
0.82; distinct 8x8 digits reach 0.979, hence the data-relative part.
near_kind="similar" (text): near pairs by embedding are reported as similar, never as leaks or label conflicts:
sentence embeddings put different questions about one subject close together ("Who invented the telephone?" vs
"When was the telephone invented?", TREC, docs/reliability.md); --dedupe leaves them alone.
"""
from __future__ import annotations

import numpy as np

ROLES = ("train", "val", "test")
RELATIVE = 0.25    # near-duplicate: 1 - similarity at most a quarter of the median nearest-neighbour distance


def _role_of(split: dict, n: int) -> list[str]:
    role = [""] * n
    for r in ROLES:
        for i in split[r]:
            role[i] = r
    return role


def _same_key_pairs(keys: list[str]):
    """(i, j), i < j, for every two items that share a key."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        for k, j in enumerate(members):
            for i in members[:k]:
                yield i, j


def find_duplicates(ds, split: dict, feats: np.ndarray | None, threshold: float = 0.9, limit: int = 200,
                    near_kind: str = "") -> dict:
    """Pairs (i, j) flagged as exact, normalised or near duplicates, each with its kind: leak (different splits),
    conflict (same content, different labels), duplicate (same split and label), or similar (near_kind="similar":
    near pairs that are only reported)."""
    role = _role_of(split, len(ds))
    pairs: dict[tuple[int, int], dict] = {}
    for match, keys in (("exact", ds.hashes), ("normalised", getattr(ds, "match_keys", None) or [])):
        for pair in _same_key_pairs(keys):
            pairs.setdefault(pair, {"match": match, "similarity": 1.0})     # exact wins over normalised
    effective = threshold
    if feats is not None and threshold < 1.0:
        f = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        nn = np.empty(len(f))
        for start in range(0, len(f), 1024):                        # blocks: memory stays O(1024 x N)
            sim = f[start: start + 1024] @ f.T
            sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -1
            nn[start: start + len(sim)] = sim.max(1)
        # a near-duplicate is far closer than a typical nearest neighbour: small, similar-looking images (digits)
        # have distinct neighbours at 0.93-0.98, where photos' neighbours sit at 0.6-0.8
        effective = max(threshold, 1 - RELATIVE * float(np.median(1 - nn)))
        for start in range(0, len(f), 1024):
            sim = f[start: start + 1024] @ f.T
            rows, cols = np.nonzero(sim >= effective)
            for a, b in zip(rows + start, cols):
                if a < b and (a, b) not in pairs:
                    pairs[(int(a), int(b))] = {"match": "near", "similarity": float(sim[a - start, b])}
    found = []
    for (i, j), info in sorted(pairs.items()):
        if not role[i] or not role[j]:
            continue                     # an item outside every split (never the case for a saved split)
        kind = ("similar" if info["match"] == "near" and near_kind == "similar" else
                "conflict" if ds.labels[i] != ds.labels[j] else "leak" if role[i] != role[j] else "duplicate")
        found.append({"a": ds.paths[i], "b": ds.paths[j], "ia": i, "ib": j, "roles": [role[i], role[j]],
                      "labels": [ds.classes[ds.labels[i]], ds.classes[ds.labels[j]]], "kind": kind, **info})
    counts = {k: sum(p["kind"] == k for p in found) for k in ("leak", "conflict", "duplicate", "similar")}
    counts.update({m: sum(p["match"] == m for p in found) for m in ("exact", "normalised", "near")})
    found.sort(key=lambda p: p["kind"] == "similar")     # leaks, conflicts and duplicates first, similar last
    return {"threshold": effective, "threshold_floor": threshold, "counts": counts, "pairs": found[:limit], "all_pairs": len(found),
            "_pairs": found}


def dedupe_train(report: dict, split: dict) -> list[int]:
    """Train items to drop: any train copy of a val/test item, every train item in a label conflict, and all but
    the first of each duplicate group within train. Val and test are never changed (they stay comparable)."""
    drop = set()
    for p in report["_pairs"]:
        members = ((p["ia"], p["roles"][0]), (p["ib"], p["roles"][1]))
        if p["kind"] in ("leak", "conflict"):
            drop |= {i for i, r in members if r == "train"}
        elif p["kind"] == "duplicate" and p["roles"] == ["train", "train"]:    # "similar" pairs are only reported
            drop.add(p["ib"])
    return sorted(drop)


def public(report: dict) -> dict:
    """The JSON-safe part for results.json (indices and the full pair list stay in memory)."""
    return {k: v for k, v in report.items() if not k.startswith("_")}
