"""The package's modules import one another in layers: no cycle, and no arrow from a lower layer to
a higher one (imports under ``TYPE_CHECKING`` aside, function-level imports included).

The layer order is written once, here (:data:`LAYERS`), and drawn in ``docs/architecture.md``.
A module belongs to the layer of the longest prefix that names it; ``sagas`` names the front door
(the package's ``__init__``) alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sagas"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "sagas.errors",
            "sagas._lazy",
            "sagas.partitioning",
            "sagas.settings",
            "sagas.kafka_io",
            "sagas.protocol",
        ),
    ),
    ("definitions", ("sagas.dsl",)),
    ("engine", ("sagas.engine",)),
    ("records", ("sagas.serde",)),
    ("app and wire", ("sagas.app", "sagas.wire")),
    ("observers", ("sagas.runtime.observe", "sagas.observe")),
    ("runtime", ("sagas.runtime",)),
    (
        "operate and client",
        (
            "sagas.operate",
            "sagas.watch",
            "sagas.client",
            "sagas.client_http",
            "sagas.async_client",
            "sagas.typed",
        ),
    ),
    (
        "services and tools",
        (
            "sagas.participants",
            "sagas.long_running_adapter",
            "sagas.testing",
            "sagas.faust",
            "sagas.ui",
            "sagas.dev",
        ),
    ),
    ("command and front door", ("sagas.cli", "sagas")),
]
"""Lowest first: a module imports only from its own layer or the ones before it."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of the package's modules. ``from package import submodule`` is an
    import of the submodule alone."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.append(sub if sub in mods else base)
            graph[name].update(f for f in found if f in mods and f != name)
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), list(graph[start])
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return False


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of ``module``'s layer (-1: none names it)."""
    best, found = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(f"{prefix}.") and prefix != PACKAGE.name
            if (module == prefix or inside) and len(prefix) > best:
                best, found = len(prefix), index
    return found


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for each import of ``a`` that leads back to it (a package's ``__init__``
    handing on its submodules' names is not a cycle)."""
    return sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        for d in deps
        if not d.startswith(f"{m}.") and not m.startswith(f"{d}.") and _reaches(graph, d, m)
    )


def up_arrows(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for each import of a module ``b`` of a higher layer than ``a``'s."""
    return sorted(
        f"{m} ({LAYERS[layer_of(m)][0]}) -> {d} ({LAYERS[layer_of(d)][0]})"
        for m, deps in graph.items()
        for d in deps
        if layer_of(d) > layer_of(m)
    )


def test_no_module_of_the_package_imports_itself_back() -> None:
    found = cycles(_graph(_modules()))
    assert found == [], "import cycles: " + "; ".join(found)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in _modules() if layer_of(m) < 0)
    assert unplaced == [], f"modules in no layer of LAYERS: {unplaced}"


def test_no_module_imports_from_a_higher_layer() -> None:
    found = up_arrows(_graph(_modules()))
    assert found == [], "imports up the layers:\n" + "\n".join(found)
