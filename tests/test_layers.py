"""Imports point down the layer order and form no cycle (issue 22 item 7), read from the source with ``ast``.

Layers, lowest first: ``errors``/``files``/``version`` -> ``models`` -> ``data`` -> ``engine`` -> ``plots`` ->
``analysis`` -> ``studies`` -> ``integrations`` -> ``cli``. A module may import its own layer or a lower one. The
package's ``__init__`` (the lazy public API) sits above every layer and may import anything; nothing may
import it. Every ``import`` counts, also one inside a function or under ``TYPE_CHECKING``: a deferred import is
still a dependency, and a climb hidden in a function is how layers blur.

The one allowed cycle: the registry loads the model families on first use (``models.registry`` ->
``models.families`` -> each family's modules -> ``models.registry``, which they import to register themselves).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "ventralkit"

#: top-level modules / sub-packages of ventralkit by layer, lowest first (the root package is above them all)
LAYERS: list[tuple[str, ...]] = [
    ("errors", "files", "settings", "version"),
    ("models",),
    ("data",),
    ("engine",),
    ("plots",),
    ("analysis",),
    ("studies",),
    ("integrations",),
    ("cli", "__main__"),
]

#: import edges allowed to close a cycle, each with why
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {
    ("ventralkit.models.registry", "ventralkit.models.families"):
        "the registry imports the model families on first use; each family registers itself through the registry",
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (the deepest module of the package the name resolves to)
    line: int
    lazy: bool  # inside a function


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (``pkg/__init__.py`` is ``pkg``)."""
    root = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _in_functions(tree: ast.AST) -> set[int]:
    """ids of the import nodes that sit inside a function body."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return inside


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The module an import of ``name`` executes last: ``a.b.c`` if it is a module, else its nearest package."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def read_imports(package_dir: Path) -> list[Import]:
    """Every import of a module of the package by a module of the package, relative imports resolved.

    ``from pkg import name`` points at ``pkg.name`` when that is a module (``from . import families``),
    else at ``pkg`` (a function or constant defined there)."""
    modules = module_names(package_dir)
    top = package_dir.name
    found = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        lazy = _in_functions(tree)
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    if node.level - 1 >= len(parts):
                        raise AssertionError(f"{path}:{node.lineno}: a relative import above the package")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] != top:
                    continue
                target = _resolve(target, modules)
                if target != source:
                    found.append(Import(source, target, node.lineno, id(node) in lazy))
    return found


def layer_of(module: str, layers=LAYERS) -> int:
    """The layer index of a module; the root package is above every layer."""
    parts = module.split(".")
    if len(parts) == 1:
        return len(layers)
    for index, names in enumerate(layers):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module} is in no layer: add {parts[1]!r} to LAYERS in tests/test_layers.py")


def climbs(imports: list[Import], layers=LAYERS) -> list[str]:
    """One line per import that points up the layer order."""
    bad = []
    for imp in imports:
        if layer_of(imp.target, layers) > layer_of(imp.source, layers):
            where = "inside a function" if imp.lazy else "at module level"
            bad.append(f"{imp.source} (line {imp.line}, {where}) imports {imp.target}, a higher layer")
    return sorted(set(bad))


def cycles(imports: list[Import], allowed=ALLOWED_CYCLE_EDGES) -> list[list[str]]:
    """The strongly connected components of more than one module, without the allowed edges (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if (imp.source, imp.target) not in allowed:
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def _describe(component: list[str], imports: list[Import]) -> str:
    """One shortest loop through the component's first module, each step with its line."""
    inside = set(component)
    step = {}
    for i in imports:
        if i.source in inside and i.target in inside and (i.source, i.target) not in ALLOWED_CYCLE_EDGES:
            step.setdefault((i.source, i.target), i.line)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for (a, b) in sorted(step):
                if a != v:
                    continue
                if b == start:
                    loop = paths[v] + [start]
                    return "cycle: " + "; ".join(
                        f"{m} imports {n} (line {step[(m, n)]})" for m, n in zip(loop, loop[1:]))
                if b not in paths:
                    paths[b] = paths[v] + [b]
                    following.append(b)
        frontier = following
    return "cycle among " + ", ".join(component)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return read_imports(PACKAGE_DIR)


def test_every_module_has_a_layer(imports):
    for module in module_names(PACKAGE_DIR):
        layer_of(module)


def test_no_import_points_up_the_layers(imports):
    bad = climbs(imports)
    assert not bad, "imports that climb the layer order:\n" + "\n".join(bad)


def test_no_import_cycle_but_the_registry_loading_the_families(imports):
    found = cycles(imports)
    assert not found, "\n".join(_describe(c, imports) for c in found)


def command_imports(imports: list[Import]) -> list[str]:
    """Imports of one command module by another (``cli/<command>.py``; ``cli/common.py`` is what they share)."""
    def is_command(module: str) -> bool:
        return module.startswith("ventralkit.cli.") and module not in ("ventralkit.cli.common", "ventralkit.cli.__main__")

    return sorted({f"{i.source} (line {i.line}) imports {i.target}" for i in imports
                   if is_command(i.source) and is_command(i.target)})


def test_no_command_module_imports_another(imports):
    bad = command_imports(imports)
    assert not bad, "move what commands share into cli/common.py or a lower layer:\n" + "\n".join(bad)


def test_the_allowed_cycle_is_the_lazy_family_loading(imports):
    """The exception stays narrow: the edge exists, is deferred into a function, and does close a cycle."""
    edges = {(i.source, i.target): i for i in imports}
    for edge in ALLOWED_CYCLE_EDGES:
        assert edge in edges, f"{edge} no longer exists: remove it from ALLOWED_CYCLE_EDGES"
        assert edges[edge].lazy, f"{edge[0]} imports {edge[1]} at module level: the family loading must be lazy"
    assert cycles(imports, allowed={}), "the allowed edge closes no cycle: remove it from ALLOWED_CYCLE_EDGES"


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "ventralkit" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "ventralkit"


def test_the_reader_finds_climbs_and_cycles_in_every_import_form(tmp_path):
    """A small package with one climb per import form and one cycle: each is found, with its module."""
    pkg = _write_package(tmp_path, {
        "__init__.py": "from .errors import E\n",
        "errors.py": "",
        "models/__init__.py": "",
        "models/registry.py": "def load():\n    from . import families\n",
        "models/families.py": "from .cornet import z\n",
        "models/cornet/__init__.py": "",
        "models/cornet/z.py": "from ..registry import load\n",
        "engine/__init__.py": "",
        "engine/run.py": "import ventralkit.plots.curves\n",  # absolute, module level
        "engine/loop.py": "def f():\n    from ..analysis import stats\n",  # relative, in a function
        "engine/a.py": "from . import b\n",
        "engine/b.py": "from .a import thing\n",
        "plots/__init__.py": "",
        "plots/curves.py": "from ..engine.b import x\nfrom ventralkit import __version__\n",
        "analysis/__init__.py": "",
        "analysis/stats.py": "from ..errors import E\n",
    })
    found = read_imports(pkg)
    bad = climbs(found)
    assert any(b.startswith("ventralkit.engine.run ") and "ventralkit.plots.curves" in b for b in bad), bad
    assert any(b.startswith("ventralkit.engine.loop ") and "inside a function" in b
               and "ventralkit.analysis.stats" in b for b in bad), bad
    assert any(b.startswith("ventralkit.plots.curves ") and b.endswith("imports ventralkit, a higher layer")
               for b in bad), bad  # the root package is the top
    assert len(bad) == 3, bad  # plots -> engine and the root's own import are allowed
    assert cycles(found) == [["ventralkit.engine.a", "ventralkit.engine.b"]]  # not the families' (allowed)
    with_families = cycles(found, allowed={})
    assert ["ventralkit.models.cornet.z", "ventralkit.models.families", "ventralkit.models.registry"] in with_families
