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
EXACT_MAX = 20_000  # above this many items, near duplicates come from a FAISS index (benchmarks/scale.py --near-dups)
NEIGHBOURS = 8      # neighbours per item the index returns


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


def _threshold(nn: np.ndarray, floor: float) -> float:
    """The near-duplicate similarity: far closer than a typical nearest neighbour (small, similar-looking images,
    digits, have distinct neighbours at 0.93-0.98, where photos' neighbours sit at 0.6-0.8), and at least `floor`."""
    return max(floor, 1 - RELATIVE * float(np.median(1 - nn)))


def _block(n: int) -> int:
    """Rows per block of a rows x n similarity product: 1024, fewer where that would pass 2**26 floats (256 MB): at a
    million items a 1024-row block was 4 GiB, the peak of a whole 1M-text run (10.6 GiB)."""
    return max(1, min(1024, 2 ** 26 // max(n, 1)))


def _nearest(f: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each of `rows`' highest cosine similarity to another row of f (unit vectors), in blocks of _block(len(f))."""
    nn = np.empty(len(rows), np.float32)
    block = _block(len(f))
    for start in range(0, len(rows), block):
        idx = rows[start: start + block]
        sim = f[idx] @ f.T
        sim[np.arange(len(idx)), idx] = -1
        nn[start: start + len(idx)] = sim.max(1)
    return nn


def exact_near_pairs(f: np.ndarray, floor: float) -> tuple[dict, float]:
    """({(i, j): similarity} at or above the data-relative threshold, threshold), by all-pairs products in blocks
    (memory O(1024 x N), time O(N^2 d): up to EXACT_MAX items)."""
    effective = _threshold(_nearest(f, np.arange(len(f))), floor)
    out = {}
    block = _block(len(f))
    for start in range(0, len(f), block):
        sim = f[start: start + block] @ f.T
        rows, cols = np.nonzero(sim >= effective)
        for a, b in zip(rows + start, cols):
            if a < b:
                out[(int(a), int(b))] = float(sim[a - start, b])
    return out, effective


def indexed_near_pairs(f: np.ndarray, floor: float, k: int = NEIGHBOURS, sample: int = 2000,
                       seed: int = 0) -> tuple[dict, float]:
    """The same above EXACT_MAX items, in time ~linear in N: the threshold from `sample` items' exact nearest
    neighbours, the pairs from each item's k nearest neighbours in a FAISS inverted-file index (cosine as inner
    product on unit vectors; nlist ~ 4 sqrt(N) cells, 16 probed). A near copy is far closer than any other
    neighbour, so it is among the k found; an item with more than k near copies has only k of them listed (exact
    copies are found by hash regardless). benchmarks/scale.py --near-dups: recall against the exact search."""
    import faiss
    rng = np.random.default_rng(seed)
    probe_rows = np.sort(rng.choice(len(f), size=min(sample, len(f)), replace=False))
    effective = _threshold(_nearest(f, probe_rows), floor)
    d = f.shape[1]
    nlist = int(min(max(16, 4 * np.sqrt(len(f))), len(f) // 39))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    train = f[rng.choice(len(f), size=min(len(f), 64 * nlist), replace=False)]
    index.train(train)
    index.add(f)
    index.nprobe = min(16, nlist)
    out = {}
    for start in range(0, len(f), 16384):
        sims, ids = index.search(f[start: start + 16384], k + 1)
        rows, cols = np.nonzero((sims >= effective) & (ids >= 0))
        for r, c in zip(rows, cols):
            a, b = start + int(r), int(ids[r, c])
            if a != b:
                out[(min(a, b), max(a, b))] = float(sims[r, c])
    return out, effective


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
        f = np.ascontiguousarray(feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12),
                                 dtype=np.float32)
        near, effective = (exact_near_pairs if len(f) <= EXACT_MAX else indexed_near_pairs)(f, threshold)
        for pair, sim in near.items():
            pairs.setdefault(pair, {"match": "near", "similarity": sim})
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
