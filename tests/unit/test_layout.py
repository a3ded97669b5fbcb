"""The house rules that keep the code readable, checked on every run: no import circle, no
module past 350 lines, SQL only in `store/` (and the schema's own modules), errors raised as
`errors.py` classes rather than FastAPI's HTTPException."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

import sentiment_platform

PACKAGE = Path(sentiment_platform.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 350
# Statement builders: whoever imports one writes SQL.
SQL_BUILDERS = {"select", "insert", "update", "delete", "text", "literal_column", "func"}
SQL_HOMES = ("store/", "models/", "db.py")


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_no_module_imports_itself_through_a_circle() -> None:
    graph = grimp.build_graph("sentiment_platform")  # TYPE_CHECKING and in-function imports too
    circles = sorted(
        f"{importer} -> {imported} -> ... -> {importer}"
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.find_shortest_chain(importer=imported, imported=importer)
    )
    assert circles == []


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if "migrations/versions" not in _relative(p)], ids=_relative
)
def test_a_module_fits_in_350_lines(path: Path) -> None:
    """Migrations aside: each is history, read once."""
    assert len(path.read_text("utf-8").splitlines()) <= MAX_LINES


def _imported_names(path: Path) -> set[tuple[str, str]]:
    tree = ast.parse(path.read_text("utf-8"))
    return {
        (node.module or "", alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_sql_is_written_in_the_store_only() -> None:
    writers = sorted(
        _relative(path)
        for path in SOURCES
        if not _relative(path).startswith(SQL_HOMES)
        and any(
            module == "sqlalchemy" and name in SQL_BUILDERS
            for module, name in _imported_names(path)
        )
    )
    assert writers == []


def test_errors_are_raised_as_platform_errors() -> None:
    raisers = sorted(
        _relative(path)
        for path in SOURCES
        if _relative(path) != "api/errors.py"
        and any(name == "HTTPException" for _, name in _imported_names(path))
    )
    assert raisers == []


def test_no_merge_conflict_is_left_in_the_tree() -> None:
    repo = PACKAGE.parents[1]
    texts = [repo / "README.md", *repo.glob("docs/*.md"), *repo.glob("benchmarks/*")]
    texts += [*SOURCES, *repo.glob("tests/**/*.py")]
    left = sorted(
        str(path.relative_to(repo))
        for path in texts
        if path.is_file()
        and any(
            line.startswith(("<<<<<<< ", ">>>>>>> "))
            for line in path.read_text("utf-8", errors="replace").splitlines()
        )
    )
    assert left == []
