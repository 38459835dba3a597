from __future__ import annotations

from pathlib import Path

import pytest

from bot.file_lock import FileLock
from core.errors import OperationalError


def test_a_lock_file_that_cannot_be_created_is_one_error_naming_it(tmp_path: Path) -> None:
    # The data folder is a file: the demo's and the imports' locks live in it.
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    path = a_file / "demo.sqlite.lock"
    with pytest.raises(OperationalError) as caught:
        FileLock(path).acquire()
    assert str(caught.value) == (
        f"cannot create the lock file {path}: a file stands where a folder should be "
        "(QT__APP__DATA_DIR and QT__DATABASE__URL must name folders that can be written)"
    )
