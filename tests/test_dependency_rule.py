"""The dependency rule, read from the source: no import of a forbidden package, anywhere.

A static check, so that an import inside a function (run only on some request or some
benchmark) is caught as surely as one at the top of a module. ``test_process.py`` checks
the same rule at run time for serving and torch.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
#: Package -> the top-level modules (or dotted prefixes) it must never import.
FORBIDDEN = {
    "ensembles": ("serving",),
    "serving": ("torch", "ensembles.training", "ensembles.export", "ensembles.benchmark"),
}


def imported_modules(source: str) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of every absolute import in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def violations(package: str) -> list[str]:
    """Every ``file:line: name`` where ``package`` imports what it must not."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in imported_modules(path.read_text()):
            if any(name == bad or name.startswith(f"{bad}.") for bad in FORBIDDEN[package]):
                found.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_what_the_rule_forbids(package):
    assert violations(package) == []


def test_the_check_sees_imports_inside_functions():
    source = "def f():\n    from serving.fused import x\n    import torch.nn\n"
    assert list(imported_modules(source)) == [
        (2, "serving.fused"),
        (2, "serving.fused.x"),
        (3, "torch.nn"),
    ]
