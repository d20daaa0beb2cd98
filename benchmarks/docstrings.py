"""A real-text classification set of any size up to ~13k, built offline from what is installed: the first sentence
of the docstrings of public functions and classes, labelled with the library they document (numpy, scipy,
scikit-learn, torch, pandas, matplotlib, sympy, networkx). Real English of 6-60 words where the vocabulary overlaps across classes
(array, matrix, axis, sample, plot, tensor...), so neither TF-IDF nor a frozen encoder solves it outright: the
10k-text stand-in for issue 27 item 6 (our 10.7k-sentence set is not shipped).

    python benchmarks/docstrings.py /tmp/docstrings-10000.csv [--n 10000]

Deterministic for given installed versions (benchmarks/README.md names them); duplicates are dropped.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import inspect
import pkgutil
import random
import re
import warnings

LIBS = ("numpy", "scipy", "sklearn", "torch", "pandas", "matplotlib", "sympy", "networkx")


def first_sentence(doc: str) -> str:
    text = " ".join(doc.strip().split("\n\n")[0].split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return (m.group(1) if m else text).strip()


def sentences(lib: str) -> list[str]:
    out, seen_obj = [], set()
    mods, todo = [], [importlib.import_module(lib)]
    while todo:              # public modules, depth first; test packages and private modules skipped
        mod = todo.pop()
        mods.append(mod)
        for info in sorted(pkgutil.iter_modules(getattr(mod, "__path__", [])), key=lambda i: i.name, reverse=True):
            if info.name.startswith("_") or info.name in ("tests", "testing", "conftest"):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    todo.append(importlib.import_module(f"{mod.__name__}.{info.name}"))
            except Exception:   # optional dependencies missing: that module is skipped
                continue
    def members(ns):
        for name, obj in sorted(ns.items()):
            if name.startswith("_") or id(obj) in seen_obj or not (inspect.isfunction(obj) or inspect.isclass(obj)
                                                                    or inspect.isbuiltin(obj)):
                continue
            seen_obj.add(id(obj))
            yield obj
            if inspect.isclass(obj) and obj.__module__.split(".")[0] == lib:     # its own public methods too
                yield from members(dict(vars(obj)))
    for mod in mods:
        for obj in members(dict(vars(mod))):
            doc = inspect.getdoc(obj) or ""
            s = first_sentence(doc)
            words = s.split()
            # keep prose: 6-60 words, no signatures, code or doctest lines
            if 6 <= len(words) <= 60 and not re.search(r"[(){}\[\]=>`]{2}|^\w+\(|>>>|::", s):
                out.append(s)
    return sorted(set(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=10_000)
    a = ap.parse_args()
    per = {lib: sentences(lib) for lib in LIBS}
    owners: dict[str, set] = {}
    for lib, ss in per.items():
        for s in ss:
            owners.setdefault(s, set()).add(lib)
    rng = random.Random(0)
    rows = []
    for lib, ss in per.items():
        ss = [s for s in ss if len(owners[s]) == 1]      # a sentence two libraries share has no single label
        rng.shuffle(ss)
        rows += [(s, lib) for s in ss]
        print(f"{lib}: {len(ss)} sentences")
    rng.shuffle(rows)
    if len(rows) > a.n:          # stratified cut: every library keeps its share
        counts = {lib: sum(1 for _, l in rows if l == lib) for lib in LIBS}
        quota = {lib: round(a.n * c / len(rows)) for lib, c in counts.items()}
        kept, taken = [], dict.fromkeys(LIBS, 0)
        for s, lib in rows:
            if taken[lib] < quota[lib]:
                kept.append((s, lib))
                taken[lib] += 1
        rows = kept
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    print(f"{len(rows)} rows -> {a.out}")


if __name__ == "__main__":
    main()
