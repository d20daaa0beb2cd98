"""The package's structure, checked from its source (no imports run): layers, no cycles, branches in one place.

Layers, lowest first; a module may import its own layer and the ones below, never above:
core < stats < models < modalities < training < pipeline < outputs < app (docs/architecture.md draws them).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "headstart"
LAYERS = ["core", "stats", "models", "modalities", "training", "pipeline", "outputs", "app"]
LAZY_OK = {"headstart.app.cli", "headstart"}   # the CLI and the package facade load the application on
#                                                 demand: `headstart --help` and `import headstart` stay instant
NO_TORCH = ("core", "stats")        # pure Python / numpy / scikit-learn layers
MODALITY_NAMES = {"image", "text", "audio"}
STRATEGY_NAMES = {"classic", "linear-probe", "finetune", "scratch"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()


def _type_checking(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree, type_only: bool = False) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for every run-time import; type_only: the imports inside
    TYPE_CHECKING blocks instead (they break no cycle at run time, but a layer rule all the same)."""
    found = []

    def visit(node, in_function, typing_block=False):
        typing_block = typing_block or _type_checking(node)
        if typing_block != type_only and isinstance(node, (ast.Import, ast.ImportFrom)):
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, in_function, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:       # `from headstart.pipeline import units` imports the module units
                sub = f"{node.module}.{a.name}"
                found.append((sub if sub in MODULES else node.module, in_function, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
                  typing_block)
    visit(tree, False)
    return found


GRAPH = {m: _imports(ast.parse(f.read_text())) for m, f in MODULES.items()}
TYPE_ONLY = {m: _imports(ast.parse(f.read_text()), type_only=True) for m, f in MODULES.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)   # root: top


def test_every_module_lives_in_a_layer():
    loose = [m for m in MODULES if _layer(m) == len(LAYERS) and m not in ("headstart", "headstart.__main__")]
    assert not loose, f"modules outside the layer packages: {loose}"


def test_imports_follow_the_layer_order():
    """Run-time and annotation-only (TYPE_CHECKING) imports alike."""
    bad = [f"{m}:{line} imports {dep} ({LAYERS[_layer(m)]} < {LAYERS[_layer(dep)]})"
           for m in GRAPH for dep, _, line in GRAPH[m] + TYPE_ONLY[m]
           if dep.startswith("headstart.") and dep in MODULES and _layer(dep) > _layer(m)]
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_layer_test_sees_annotation_only_imports():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from headstart.app import cli\n"
                     "import headstart.core.io\n")
    assert _imports(tree, type_only=True) == [("headstart.app.cli", False, 3)]
    assert [d for d, _, _ in _imports(tree)] == ["typing", "headstart.core.io"]


def test_nothing_below_the_pipeline_takes_the_run_context():
    """models/, modalities/, training/ take what they use (modalities/base.Inputs, a split, a Fabric), never ctx."""
    low = [m for m in MODULES if _layer(m) < LAYERS.index("pipeline")]
    bad = [f"{m}:{node.lineno} {node.name}({', '.join(a.arg for a in node.args.args)})" for m in low
           for node in ast.walk(ast.parse(MODULES[m].read_text()))
           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
               a.arg in ("ctx", "context") or "RunContext" in ast.unparse(a.annotation or ast.Constant(""))
               for a in node.args.args)]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    edges = {m: {d for d, _, _ in deps if d in MODULES and d != m} for m, deps in GRAPH.items()}
    state, stack, cycles = {}, [], []

    def dfs(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                dfs(d)
        stack.pop()
        state[m] = "done"
    for m in sorted(edges):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_function_local_imports_of_headstart():
    bad = [f"{m}:{line} imports {dep} inside a function" for m, deps in GRAPH.items() if m not in LAZY_OK
           for dep, local, line in deps if local and dep.startswith("headstart")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", NO_TORCH)
def test_pure_layers_import_no_deep_learning_library(layer):
    heavy = ("torch", "timm", "transformers", "lightning", "ctranslate2")
    bad = [f"{m}:{line} {dep}" for m, deps in GRAPH.items() if _layer(m) == LAYERS.index(layer)
           for dep, _, line in deps if dep.split(".")[0] in heavy]
    assert not bad, "\n".join(bad)


def _string_comparisons(tree) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    out.append((side.value, node.lineno))
                if isinstance(side, (ast.Tuple, ast.List, ast.Set)):
                    out += [(e.value, node.lineno) for e in side.elts if isinstance(e, ast.Constant)]
    return out


def _string_assignments(tree) -> list[tuple[str, int]]:
    """String constants assigned as a value (x = "a"; x: str = "a"; a, b = "a", f(); return "a"); a literal list of
    words (column names that happen to read "text") is data, not a name being set."""
    out = []
    for node in ast.walk(tree):
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign, ast.Return)) else None
        unpacked = isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple) and isinstance(
            value, ast.Tuple)
        for v in value.elts if unpacked else [value]:
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                out.append((v.value, node.lineno))
    return out


def test_modality_and_strategy_names_are_assigned_only_in_their_registries():
    """No `first = "finetune"` in the assessment, no `modality = "audio"` guessed from a hub id: a name is set where
    its registry entry lives (the strategy and modality registries; a backbone's modality in the backbone
    registry), and everywhere else it comes from an entry."""
    bad = []
    for m, f in MODULES.items():
        names = (set() if ".modalities" in m or m == "headstart.models.registry" else MODALITY_NAMES) | (
            set() if m == "headstart.training.strategies" else STRATEGY_NAMES)
        bad += [f"{m}:{line} assigns {v!r}" for v, line in _string_assignments(ast.parse(f.read_text()))
                if v in names]
    assert not bad, "\n".join(bad)


def test_modality_and_strategy_names_are_compared_only_in_their_registries():
    """No `modality.name == "text"` outside modalities/, no `strategy == "scratch"` outside the strategy registry:
    every other module asks the registry entry (its attributes and methods) instead."""
    bad = []
    for m, f in MODULES.items():
        names = (set() if ".modalities" in m else MODALITY_NAMES) | (
            set() if m == "headstart.training.strategies" else STRATEGY_NAMES)
        bad += [f"{m}:{line} compares with {v!r}" for v, line in _string_comparisons(ast.parse(f.read_text()))
                if v in names]
    assert not bad, "\n".join(bad)
