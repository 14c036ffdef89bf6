"""The layout README's map describes: every module in it, and imports pointing one way only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hfci

PACKAGE = Path(hfci.__file__).parent
README = Path(__file__).resolve().parents[1] / "README.md"


def module_names() -> dict[str, Path]:
    """``pytest/session.py``-style names (as README writes them) of every hfci module."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.name == "__init__.py":
            body = ast.parse(path.read_text(encoding="utf-8")).body
            # A package whose __init__ holds only its docstring is mapped by its modules.
            if str(relative.parent) == "." or all(isinstance(n, ast.Expr) for n in body):
                continue
            names[f"{relative.parent}/"] = path
        else:
            names[str(relative)] = path
    return names


def _target(node: ast.ImportFrom | ast.Import, names: dict[str, Path]) -> list[str]:
    """The README names of the hfci modules an import statement reads."""
    dotted = (
        [alias.name for alias in node.names]
        if isinstance(node, ast.Import)
        else [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
    )
    found = []
    for name in dotted:
        if not name.startswith("hfci."):
            continue
        parts = name.split(".")[1:]
        for candidate in ("/".join(parts) + ".py", "/".join(parts) + "/"):
            if candidate in names:
                found.append(candidate)
    return found


def imports() -> dict[str, tuple[set[str], list[tuple[int, str]]]]:
    """Per module: the hfci modules it imports at its top level, and any hfci import nested deeper."""
    names = module_names()
    result = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {
            t
            for node in tree.body
            if isinstance(node, ast.Import | ast.ImportFrom)
            for t in _target(node, names)
        }
        nested_nodes = [
            node
            for outer in tree.body
            if not isinstance(outer, ast.Import | ast.ImportFrom)
            for node in ast.walk(outer)
            if isinstance(node, ast.Import | ast.ImportFrom)
        ]
        nested = [(node.lineno, t) for node in nested_nodes for t in _target(node, names)]
        result[name] = (top - {name}, nested)
    return result


def readme_order() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Layout", 1)[1]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def test_no_hfci_import_hides_inside_a_function() -> None:
    hidden = {name: nested for name, (_, nested) in imports().items() if nested}
    assert not hidden, f"imports inside functions (line, module): {hidden}"


def test_readme_maps_every_module_once() -> None:
    order = readme_order()
    assert len(order) == len(set(order))
    assert set(order) == set(module_names())


def test_every_module_imports_only_modules_above_it_in_the_map() -> None:
    # An order in which every import points up is also the proof that there is no cycle.
    order = readme_order()
    upward = {
        name: sorted(t for t in targets if order.index(t) > order.index(name))
        for name, (targets, _) in imports().items()
    }
    assert not {name: below for name, below in upward.items() if below}
