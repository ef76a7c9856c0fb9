"""The house: every import in ``archprobe/`` runs down the layers, and no folder has a circle.

Read from the code's own imports (module level, inside functions and under ``TYPE_CHECKING``
alike): a module may import its own room (its top-level package or module) and the rooms of
lower layers, never a room of its own layer or above. Inside every folder the modules' imports
form no circle either.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "archprobe"

# Bottom to top. A room imports only rooms of the layers below it (bench and training, side by
# side, import neither each other).
LAYERS = (
    {"errors"},  # the error contract
    {"units", "results"},  # plain data: byte sizes, the frozen results
    {"plumbing"},  # atomic files, staged directories, signals
    {"user_code"},  # running the user's code without letting it corrupt ours
    {"zoo"},  # the registry, the nets, spec resolution
    {"probe"},  # the run context
    {"runtime"},  # devices, timers, the training step, ranks
    {"analysis"},  # static analyses on meta tensors
    {"bench", "training"},  # measurements and experiments (use the runtime)
    {"report"},  # words, units, tables, files
    {"api"},  # the Python API's doors
    {"__init__"},  # the package's face
    {"cli"},  # the command line's face
    {"__main__"},
)
LAYER_OF = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_package(module: str) -> bool:
    return MODULES.get(module) is not None and MODULES[module].name == "__init__.py"


def _imports(module: str) -> set[str]:
    """The archprobe modules ``module`` imports (``from archprobe.x import y``: ``archprobe.x.y``
    where that is a module, else ``archprobe.x``)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if _is_package(module) else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("archprobe")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("archprobe"):
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != module}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_room_has_a_layer():
    assert {_room(m) for m in MODULES} <= set(LAYER_OF), {_room(m) for m in MODULES} - set(LAYER_OF)


def test_imports_run_down_the_layers():
    upward = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
                    if _room(t) != _room(m) and LAYER_OF[_room(t)] >= LAYER_OF[_room(m)])
    assert not upward, "imports that run up or sideways:\n" + "\n".join(upward)


def _cycle(nodes: set[str]) -> list[str] | None:
    """One circle among ``nodes`` through :data:`GRAPH`, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node] & nodes):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state and (found := visit(node)):
            return found
    return None


FOLDERS = sorted({m for m in MODULES if _is_package(m)})


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_circle_inside_a_folder(folder):
    # the folder's own modules, subfolders taken whole (their __init__ stands for them)
    depth = folder.count(".") + 1
    inside = {m for m in MODULES if m.startswith(folder + ".") and m.count(".") == depth}
    cycle = _cycle(inside)
    assert cycle is None, " -> ".join(cycle or [])


def test_no_circle_between_rooms():
    rooms: dict[str, set[str]] = defaultdict(set)
    for m, targets in GRAPH.items():
        rooms[_room(m)] |= {_room(t) for t in targets} - {_room(m)}
    seen, path = set(), []

    def visit(room: str) -> None:
        assert room not in path, " -> ".join(path + [room])
        if room in seen:
            return
        path.append(room)
        for nxt in sorted(rooms[room]):
            visit(nxt)
        path.pop()
        seen.add(room)

    for room in sorted(rooms):
        visit(room)


def test_every_folder_says_what_it_owns_and_may_import():
    for folder in FOLDERS:
        doc = ast.get_docstring(ast.parse(MODULES[folder].read_text())) or ""
        assert doc, f"{folder}/__init__.py has no docstring"
        if folder.count(".") == 1:  # the wings: what they may import
            assert "import" in doc, f"{folder}/__init__.py does not say what it may import"
