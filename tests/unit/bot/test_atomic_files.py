from __future__ import annotations

import errno
from pathlib import Path

import pytest

from bot.atomic_files import atomic_files
from core.errors import OperationalError


def test_every_file_replaces_its_final_name_with_the_usual_permissions(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("old a")
    plain = tmp_path / "plain"
    plain.write_text("")  # created as any file is (umask)
    with atomic_files("report") as batch:
        batch.temporary(tmp_path / "a.json").write_text("new a")
        batch.temporary(tmp_path / "sub" / "b.csv").write_text("new b")  # folder created
        assert (tmp_path / "a.json").read_text() == "old a"  # nothing replaced before the end
    assert (tmp_path / "a.json").read_text() == "new a"
    assert (tmp_path / "sub" / "b.csv").read_text() == "new b"
    assert (tmp_path / "a.json").stat().st_mode == plain.stat().st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "plain", "sub"]


def test_a_failed_write_leaves_every_final_name_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("old a")
    with pytest.raises(OperationalError) as caught, atomic_files("report") as batch:
        batch.temporary(tmp_path / "a.json").write_text("new a")
        batch.temporary(tmp_path / "b.csv").write_text("half of b")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value) == (
        f"cannot write the report file {tmp_path / 'b.csv'}: No space left on device (no file "
        "of the report was written)"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary, no b.csv
    assert (tmp_path / "a.json").read_text() == "old a"


def test_an_interrupted_batch_leaves_no_temporary(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_files("report") as batch:
        batch.temporary(tmp_path / "a.json").write_text("new a")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
