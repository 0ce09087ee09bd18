"""The package's modules import each other without cycles.

Every ``import chatkit_django...`` / ``from chatkit_django... import`` statement counts, at
module level or inside a function: an import deferred into a function still makes the two
modules depend on each other, it only hides the cycle from the interpreter. Imports under
``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import chatkit_django

PACKAGE = "chatkit_django"
ROOT = Path(chatkit_django.__file__).parent


def module_name(path: Path) -> str:
    parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names ``tree`` imports, wherever the statement is, except under TYPE_CHECKING."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            found.add(source)
            # `from chatkit_django import export` imports the submodule chatkit_django.export
            found.update(f"{source}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        names = imported_names(tree, name, path.name == "__init__.py")
        # Importing a.b.c runs a/__init__ and a/b/__init__ too, but those are the package's
        # (near-empty) __init__ files: edges go to the module named, nothing else.
        graph[name] = {n for n in names if n in modules and n != name and n != PACKAGE}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [cycle_through(graph, component) for component in components]


def cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A concrete path start -> ... -> start inside one strongly connected component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & members):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"{component} is not a cycle")


def test_the_package_has_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "Import cycles in chatkit_django (imports inside functions count):\n" + (
        "\n".join(" -> ".join(cycle) for cycle in cycles)
    )


def test_the_graph_sees_function_level_and_submodule_imports():
    # The walker itself: an import inside a function is an edge, TYPE_CHECKING ones are not,
    # and `from package import module` points at the module.
    source = """
from typing import TYPE_CHECKING
from chatkit_django import export
if TYPE_CHECKING:
    from chatkit_django.agents import X
else:
    from chatkit_django.ids import generate_id
def f():
    from chatkit_django.models import Attachment
class C:
    def m(self):
        import chatkit_django.store
"""
    names = imported_names(ast.parse(source), "chatkit_django.example", is_package=False)
    assert {
        "chatkit_django.export",
        "chatkit_django.ids",
        "chatkit_django.models",
        "chatkit_django.store",
    } <= names
    assert "chatkit_django.agents" not in names
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_resolve_to_package_modules():
    tree = ast.parse("from . import models\nfrom .conf import chatkit_settings\n")
    assert {"chatkit_django.models", "chatkit_django.conf"} <= imported_names(
        tree, "chatkit_django.store", is_package=False
    )


HTTP_LAYER = {
    "chatkit_django.authentication",
    "chatkit_django.streaming",
    "chatkit_django.views",
    "chatkit_django.consumers",
}


def test_the_http_layer_does_not_know_the_sdks_request_types():
    # Which requests need checking before they stream is the server's business
    # (DjangoChatKitServer.check_streaming_request); the endpoint only parses and hands over.
    for name in sorted(HTTP_LAYER):
        tree = ast.parse(package_modules()[name].read_text())
        request_types = sorted(
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "chatkit.types"
            for alias in node.names
            if alias.name.startswith("Threads") or alias.name.endswith("Req")
        )
        assert request_types in ([], ["ChatKitReq"]), f"{name} imports {request_types}"


def test_layers_below_the_endpoint_do_not_import_it():
    graph = import_graph()
    above = HTTP_LAYER | {"chatkit_django.urls", "chatkit_django.uploads"}
    for name in ("authentication", "server", "entities", "agents", "store", "models", "conf"):
        module = f"chatkit_django.{name}"
        upward = sorted((graph[module] & above) - {module})
        assert not upward, f"{module} imports {upward}, which sit above it"
