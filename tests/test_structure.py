"""The package's shape: no import circle, counted with the imports inside functions too."""
import ast
from pathlib import Path

import mlp_backend

PACKAGE = Path(mlp_backend.__file__).parent
KERNELS = PACKAGE.parent / "kernels"  # installed as mlp_backend.kernels


def _modules():
    for root, prefix in ((PACKAGE, "mlp_backend"), (KERNELS, "mlp_backend.kernels")):
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            yield name, is_package, path


def _imports(name, is_package, path, modules):
    """Package-internal modules ``name`` imports anywhere in its file: ``from X import a`` is an edge to X.a
    when that is a module, else to X; an import of one's own ancestor package is no edge (it is already
    being imported whenever ``name`` is), nor is one under ``if TYPE_CHECKING:`` (for annotations only: it never
    runs)."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and
                   ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {t for t in found if t in modules and t != name and not name.startswith(t + ".")}


def _graph():
    modules = {name: (is_package, path) for name, is_package, path in _modules()}
    return {name: _imports(name, *info, modules) for name, info in modules.items()}


def test_the_import_graph_has_no_circle():
    graph = _graph()
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_training_and_the_file_format_do_not_import_the_model_classes():
    graph = _graph()
    assert not {m for m in graph["mlp_backend.train"] | graph["mlp_backend.checkpoint"]
                if m.startswith("mlp_backend.layers") or m == "mlp_backend.restore"}
