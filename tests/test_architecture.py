"""The layers of docs/architecture.md, checked on the imports the code actually makes.

Every ``import`` and ``from ... import`` of gplinker's modules (at any depth in the file, lazy
imports included) is read with ``ast``; a module may import its own layer and the layers below,
the library and the server never import the tasks or the command line (the caller passes the
task registry); the command line, outermost, may import anything.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {  # lower first; a module not listed here fails the test, so a new module must be placed
    "values": [
        "gplinker",
        "structures",
        "cells",
        "task",
        "metrics",
        "registry",
        "io",
        "atomic",
        "options",
        "settings",
        "model_dir",
        "extras",
        "html",
        "label_studio",
        "doccano",
        "curves",
        "hub",
        "model_card",
    ],
    "text": ["offsets", "alignment", "batching", "encoders", "e5"],
    "torch": ["losses", "masks", "decoding", "factorized", "heads", "model", "packing"],
    "runnable": [
        "pipelining",
        "extractor",
        "finetune",
        "onnx_runtime",
        "calibration",
        "checkpoint",
        "distributed",
        "model_thread",
    ],
    "workflows": ["training", "combine", "ray_engine", "tuning"],
    "service": [
        "server",
        "batcher",
        "guard",
        "label_studio_backend",
    ],  # a front end on the library: takes a loaded Pipeline and its settings
    "integrations": ["spacy_component", "spacy_factory"],  # other libraries' front ends: load models by path
    "command line": ["cli"],  # the outermost front end: it may start the service, the service never imports it
}
LAYER = {name: k for k, name in enumerate(LAYERS)}
RANK = {m: LAYER[name] for name, mods in LAYERS.items() for m in mods}
TASKS = LAYER["service"]  # gplinker.tasks sits above the library; only the command line imports it


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "tasks":
        return "tasks"
    parts = rel.with_suffix("").parts[1:]
    if parts == ("__main__",):
        return "cli"  # python -m gplinker is the command line
    return "gplinker" if parts == ("__init__",) else parts[0]


def imported(path: Path) -> set[str]:
    """The gplinker modules a file imports (first component after ``gplinker.``; ``tasks`` for the tasks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "gplinker" else [])
        else:
            continue
        for t in targets:
            parts = t.split(".")
            if parts[0] != "gplinker":
                continue
            names.add(parts[1] if len(parts) > 1 else "gplinker")
    return names


def rank(name: str) -> int:
    return TASKS if name == "tasks" else RANK[name]


def files():
    yield from sorted((ROOT / "gplinker").rglob("*.py"))
    yield from sorted((ROOT / "tasks").rglob("*.py"))


def test_every_module_has_a_layer():
    assert sorted({module_of(f) for f in files()} - set(RANK) - {"tasks"}) == []


def test_modules_import_only_their_layer_and_below():
    wrong = []
    for f in files():
        me = module_of(f)
        for other in imported(f) - {me, "__version__"}:
            if other not in RANK and other != "tasks":
                continue  # a name imported from the package root (gplinker.__version__)
            if me == "tasks":
                ok = rank(other) <= LAYER["workflows"]
            elif me == "cli":
                ok = True
            elif (
                RANK[me] == LAYER["integrations"]
            ):  # another library's front end picks the built-in tasks, as the command line does
                ok = other == "tasks" or rank(other) <= RANK[me]
            else:  # the library and the service never import the tasks: the caller passes the registry
                ok = other != "tasks" and rank(other) <= RANK[me]
            if not ok:
                wrong.append(f"{f.relative_to(ROOT)} imports gplinker.{other}")
    assert wrong == []


def test_the_checker_sees_lazy_imports(tmp_path):
    """The check itself can fail: an import inside a function is found."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from gplinker.tasks import default_registry\n    import gplinker.cli\n")
    assert imported(f) == {"tasks", "cli"}


def test_no_function_over_60_lines():
    """Small readable functions in the library and the tasks (docstrings and signatures count)."""
    long = []
    for f in files():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
