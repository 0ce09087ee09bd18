"""Private names of other packages: all in chatkit_django/_internal/compat.py, all still there."""

from __future__ import annotations

import ast
import importlib
import inspect
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest

import chatkit_django
from chatkit_django._internal import compat
from chatkit_django._internal.compat import PRIVATE_NAMES, PrivateName

ROOT = Path(chatkit_django.__file__).parent
COMPAT = ROOT / "_internal" / "compat.py"
# Django's documented underscore APIs: public despite the name.
DOCUMENTED = frozenset({"_meta", "_default_manager", "_base_manager"})


def installed(owner: str) -> str:
    top = owner.split(".")[0]
    dist = packages_distributions().get(top, [top])[0]
    return f"{dist} {version(dist)}"


@pytest.mark.parametrize("private", PRIVATE_NAMES, ids=lambda p: f"{p.owner}.{p.name}")
def test_the_installed_packages_still_have_each_private_name(private: PrivateName):
    where = (
        f"chatkit_django relies on the private {private.owner}.{private.name} for "
        f"{private.used_for}, and the installed {installed(private.owner)}"
    )
    sample = private.sample()
    assert hasattr(sample, private.name), (
        f"{where} no longer has it. Adapt chatkit_django/_internal/compat.py to the new version."
    )
    if private.parameters is not None:
        found = tuple(inspect.signature(getattr(sample, private.name)).parameters)
        assert found == private.parameters, (
            f"{where} changed its signature from {private.parameters} to {found}. "
            "Adapt chatkit_django/_internal/compat.py to the new version."
        )


def test_each_owner_is_the_class_that_defines_the_name():
    for private in PRIVATE_NAMES:
        module, _, name = private.owner.rpartition(".")
        owner = getattr(importlib.import_module(module), name)
        sample = private.sample()
        assert isinstance(sample, owner) or (isinstance(sample, type) and issubclass(sample, owner))


def own_private_names() -> set[str]:
    """``_names`` the package defines itself: functions, classes, attributes it assigns."""
    names: set[str] = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[-1])
    return {name for name in names if name.startswith("_")}


def private_uses(path: Path, own: set[str]) -> list[tuple[int, str]]:
    """Reads of another package's private attributes in ``path``: (line, name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif (  # getattr(x, "_name"), hasattr(x, "_name")
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr", "setattr", "delattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name = node.args[1].value
        if (
            name is not None
            and name.startswith("_")
            and not name.startswith("__")
            and name not in own
            and name not in DOCUMENTED
        ):
            found.append((node.lineno, name))
    return found


def test_no_module_but_compat_uses_a_private_name_of_another_package():
    own = own_private_names()
    uses = [
        f"{path.relative_to(ROOT.parent)}:{line}: {name}"
        for path in sorted(ROOT.rglob("*.py"))
        if path != COMPAT
        for line, name in private_uses(path, own)
    ]
    assert not uses, (
        "Private names of other packages are used outside chatkit_django/_internal/compat.py; "
        "add an adapter there (and a PrivateName entry):\n" + "\n".join(uses)
    )


def test_no_class_overrides_a_private_method_of_another_package():
    # Overriding counts as relying on a name: CsrfViewMiddleware._reject is overridden in
    # compat only.
    overrides = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == COMPAT or "migrations" in path.parts:
            continue
        module = importlib.import_module(
            ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        )
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                continue
            for name in vars(cls):
                if not name.startswith("_") or name.startswith("__") or name == "_abc_impl":
                    continue
                for base in cls.__mro__[1:]:
                    if not base.__module__.startswith("chatkit_django") and name in vars(base):
                        overrides.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
                        break
    assert not overrides, "Private methods of other packages overridden:\n" + "\n".join(overrides)


def test_the_guards_see_what_they_look_for(tmp_path):
    # The walkers themselves: a foreign private read is seen, our own names are not.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f(request, response):\n"
        "    request._files\n"
        "    hasattr(request, '_cached')\n"
        "    response._meta\n"
        "    response._mine\n"
    )
    assert [name for _, name in private_uses(probe, {"_mine"})] == ["_files", "_cached"]
    assert "_CSRFCheck" in own_private_names()
    assert compat.lazy_value.__module__ == "chatkit_django._internal.compat"
