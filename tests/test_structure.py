"""The package's rooms and the one way its imports flow (issue 37), read from the source with ``ast``.

    core (captioner/*.py)  <-  data/, metrics/  <-  train/, lecture/  <-  app/  <-  cli/

A module imports only from its own room or from rooms on a lower floor: the inference core never reads a dataset
reader, training never imports a face, and the app never imports the command line (whose `captioner app` starts
it). No import cycles, no file over 450 lines and no function over 60 lines either, so that a reader finds each stage
by its file name and
reads it in one sitting.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "captioner"
FLOORS = {"core": 0, "data": 1, "metrics": 1, "train": 2, "lecture": 2, "app": 3, "cli": 4}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 60
TABLES = {"metrics/ptb.py"}  # the PTB tokenizer's rules: a table (and the functions that list it), read as one


def _modules() -> dict[str, Path]:
    """Dotted module names under captioner, without the package prefix (``cli.main``, ``pipeline``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _room(module: str) -> str:
    head = module.split(".")[0]
    return head if head in FLOORS else "core"


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's own modules that ``module`` imports, at the top or inside functions."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.split(".")[0] == "captioner":
                target = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:  # `from . import pipeline` names a module, `from .x import f` a name
                sub = f"{target}.{alias.name}".strip(".")
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "captioner":
                    found.add(alias.name.partition(".")[2])
    # The package itself ("") holds the version and imports the pipeline lazily (PEP 562, on first use of
    # ``captioner.Captioner``), so ``from . import __version__`` ties a module to no other.
    return {m for m in found if m in modules and m not in (module, "")}


GRAPH = {m: _imports(m, p, _modules()) for m, p in _modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_flow_one_way(module):
    room = _room(module)
    wrong = [
        f"{module} ({room}) imports {target} ({_room(target)})"
        for target in sorted(GRAPH[module])
        if _room(target) != room and FLOORS[_room(target)] >= FLOORS[room]
    ]
    assert not wrong, "; ".join(wrong)


def test_the_rooms_are_what_this_test_thinks():
    assert _room("pipeline") == "core" and _room("cli.main") == "cli" and _room("data.questions") == "data"
    assert {_room(m) for m in GRAPH} == set(FLOORS)


def test_there_are_no_import_cycles():
    seen, stack, cycles = set(), [], []

    def visit(module: str) -> None:
        if module in stack:
            cycles.append(" -> ".join([*stack[stack.index(module) :], module]))
            return
        if module in seen:
            return
        seen.add(module)
        stack.append(module)
        for target in sorted(GRAPH[module]):
            visit(target)
        stack.pop()

    for module in sorted(GRAPH):
        visit(module)
    assert not cycles, cycles


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_files_and_functions_stay_short(module):
    path = _modules()[module]
    text = path.read_text()
    relative = path.relative_to(PACKAGE).as_posix()
    if relative in TABLES:  # its length is the table's (the rules of a tokenizer, written as they are listed)
        return
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{relative}: over {MAX_FILE_LINES} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{relative}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


SCRIPTS = sorted([*PACKAGE.parent.glob("benchmarks/*.py"), PACKAGE.parent / "app.py"])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_outside_the_package_import_what_exists(script):
    """The benchmarks are run by hand, not by the tests, so a moved module would break them silently."""
    modules = _modules()
    missing = []
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "captioner":
            module = node.module.partition(".")[2]
            if module not in modules:
                missing.append(node.module)
                continue
            source = modules[module].read_text()
            for alias in node.names:
                # defined or re-exported there (the package's __init__ names its lazy exports as strings)
                found = f"{module}.{alias.name}".strip(".") in modules or re.search(rf"\b{alias.name}\b", source)
                if not found:
                    missing.append(f"{node.module}.{alias.name}")
    assert not missing, f"{script.name} imports what is not there: {', '.join(missing)}"
