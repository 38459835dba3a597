"""Architecture rules that import-linter cannot express."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import core.errors as errors

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_class_is_in_the_documented_tree() -> None:
    doc = errors.__doc__ or ""
    classes = [
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.QTError)
    ]
    missing = [name for name in classes if not re.search(rf"\b{name}\b", doc)]
    assert classes and missing == []


def test_core_never_reads_the_wall_clock() -> None:
    pattern = re.compile(
        r"\b(time\.time|time\.time_ns|datetime\.now|datetime\.utcnow|date\.today)\("
    )
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "core").rglob("*.py")
        if path.name != "clock.py" and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_no_dry_run_branches() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("core", "bot", "jobs", "storage")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"\bif\s+(self\.)?dry_run\b", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_sqlmodel_tables_only_in_storage_tables() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("core", "bot", "jobs", "storage")
        for path in (ROOT / folder).rglob("*.py")
        if "table=True" in path.read_text(encoding="utf-8")
        and path.relative_to(ROOT) != Path("storage/tables.py")
    ]
    assert offenders == []
