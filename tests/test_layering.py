"""The import direction of docs/design.md: api, dashboard, tasks -> adaptive -> adaptive.ml."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) of every import statement under ``package``, lazy ones included."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.lineno, node.module))
    return found


def _offending(package: str, forbidden: tuple[str, ...], allowed_files: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{file}:{line} imports {module}"
        for file, line, module in _imports(package)
        if module.split(".")[0] in forbidden or module in forbidden
        if file not in allowed_files
    ]


def test_the_engine_never_imports_django_or_the_rest_of_the_project() -> None:
    assert _offending("adaptive/ml", ("django", "rest_framework", "celery", "api", "dashboard", "tasks")) == []
    assert not [
        m for _, _, m in _imports("adaptive/ml") if m.startswith("adaptive.") and not m.startswith("adaptive.ml")
    ]


def test_the_domain_never_imports_its_entry_points() -> None:
    assert _offending("adaptive", ("api", "dashboard", "tasks", "celery")) == []


@pytest.mark.parametrize("package", ["api", "dashboard"])
def test_views_reach_workers_only_through_the_domain(package: str) -> None:
    # Health asks the workers themselves (a Celery control broadcast): the one allowed exception.
    assert _offending(package, ("tasks", "celery", "torch"), allowed_files=("api/views/health.py",)) == []
