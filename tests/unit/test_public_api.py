"""The project uses its libraries through their public API only: it imports no private module
of a dependency, reads no private attribute of another object, and assigns no function onto a
library's object (a replaced method silently breaks on the library's next release)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [ROOT / "shared" / "src", ROOT / "deploy" / "src", *(ROOT / "services").glob("*/src")]
EVERYTHING = [*PRODUCT, ROOT / "tests", ROOT / "bench"]
FIRST_PARTY = ("bank_", "tests", "bench")


def python_files(roots: list[Path]) -> Iterator[tuple[str, ast.Module]]:
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path))


def private(module: str) -> bool:
    return not module.startswith(FIRST_PARTY) and any(
        part.startswith("_") and part != "__future__" for part in module.split(".")
    )


@pytest.mark.parametrize(("where", "tree"), list(python_files(EVERYTHING)), ids=lambda v: v)
def test_no_private_module_of_a_dependency_is_imported(where: str, tree: ast.Module) -> None:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno} {a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.ImportFrom) and private(node.module or ""):
            found.append(f"{where}:{node.lineno} {node.module}")
    assert found == []


@pytest.mark.parametrize(("where", "tree"), list(python_files(PRODUCT)), ids=lambda v: v)
def test_no_private_attribute_of_another_object_is_read(where: str, tree: ast.Module) -> None:
    found = [
        f"{where}:{node.lineno} .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert found == []


@pytest.mark.parametrize(("where", "tree"), list(python_files(PRODUCT)), ids=lambda v: v)
def test_no_function_is_assigned_onto_an_object(where: str, tree: ast.Module) -> None:
    functions = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    found = [
        f"{where}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(onto_another(target) for target in node.targets)
        and (
            isinstance(node.value, ast.Lambda)
            or (isinstance(node.value, ast.Name) and node.value.id in functions)
            or (
                isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "partial"
            )
        )
    ]
    found += [
        f"{where}:{node.lineno} setattr"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "setattr"
    ]
    assert found == []


def onto_another(target: ast.expr) -> bool:
    """An attribute of an object other than the one whose method this is (`self`)."""
    return isinstance(target, ast.Attribute) and not (
        isinstance(target.value, ast.Name) and target.value.id == "self"
    )


def test_the_checks_catch_what_they_are_for() -> None:
    """The replaced method and private import this project once had are found."""
    legacy = ast.parse(
        "from faststream._internal.endpoint.subscriber.utils import MultiLock\n"
        "def get_msg(consumer): ...\n"
        "subscriber.get_msg = get_msg\n"
        "app.openapi = lambda: {}\n"
        "consumer.commit = partial(commit, consumer)\n"
        "consumer._client.force_metadata_update()\n"
    )
    assert private("faststream._internal.endpoint.subscriber.utils")
    assert not private("faststream.kafka")
    assert not private("bank_shared._anything")
    with pytest.raises(AssertionError):
        test_no_private_module_of_a_dependency_is_imported("legacy", legacy)
    with pytest.raises(AssertionError):
        test_no_private_attribute_of_another_object_is_read("legacy", legacy)
    with pytest.raises(AssertionError):
        test_no_function_is_assigned_onto_an_object("legacy", legacy)
