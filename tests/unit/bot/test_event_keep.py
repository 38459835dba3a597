"""The file that keeps the events the audit trail refused: appended and read back in order; a
line cut short by a crash is skipped; anything else it cannot read is set aside, whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.event_keep import FileEventKeep, event_keep_for
from core.errors import OperationalError
from core.ports import StoredEvent


def stored(i: int) -> StoredEvent:
    return StoredEvent(
        event_id=f"e{i}", topic="order.filled", ts_ms=i, payload={"amount": "1.5", "n": [i]}
    )


def test_events_come_back_in_the_order_they_were_kept(tmp_path: Path) -> None:
    keep = FileEventKeep(tmp_path / "qt.db.unsaved-events")
    assert keep.left() == []
    keep.add([stored(0), stored(1)])
    keep.add([stored(2)])
    assert FileEventKeep(keep.path).left() == [stored(0), stored(1), stored(2)]
    keep.clear()
    keep.clear()  # gone already: fine
    assert keep.left() == []


def test_a_line_cut_short_by_a_crash_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keep = FileEventKeep(tmp_path / "k")
    keep.add([stored(0)])
    with keep.path.open("ab") as f:
        f.write(b'{"event_id":"e1","top')  # killed mid-write: never delivered
    assert keep.left() == [stored(0)]
    assert "cut short" in caplog.text


@pytest.mark.parametrize(
    "line",
    [b"not json", b"[1, 2]", b'{"event_id": "x", "topic": "t", "ts_ms": "5", "payload": {}}',
     b"\xff\xfe\n"],
    ids=["text", "a list", "ts as text", "not utf-8"],
)  # fmt: skip
def test_a_file_this_program_did_not_write_is_set_aside_whole(
    tmp_path: Path, line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    keep = FileEventKeep(tmp_path / "k")
    keep.add([stored(0)])
    with keep.path.open("ab") as f:
        f.write(line.rstrip(b"\n") + b"\n")
    keep.add([stored(2)])
    original = keep.path.read_bytes()

    assert keep.left() == [stored(0)]  # those before it still go to the trail
    aside = tmp_path / "k.unreadable"
    assert aside.read_bytes() == original and not keep.path.exists()  # for an operator
    assert "for an operator" in caplog.text


def test_the_keep_sits_beside_a_database_file_only(tmp_path: Path) -> None:
    keep = event_keep_for(f"sqlite+aiosqlite:///{tmp_path}/qt.db")
    assert keep is not None and keep.path == tmp_path / "qt.db.unsaved-events"
    assert event_keep_for("sqlite+aiosqlite:///:memory:") is None
    assert event_keep_for("memory://") is None


def test_events_kept_after_a_line_cut_short_come_back_too(tmp_path: Path) -> None:
    # Killed mid-write, then the next process, its database still failing, keeps its own
    # events after the cut line: a third process must get them all, the file not set aside.
    keep = FileEventKeep(tmp_path / "k")
    keep.add([stored(0)])
    with keep.path.open("ab") as f:
        f.write(b'{"event_id":"e1","top')
    restarted = FileEventKeep(keep.path)
    assert restarted.left() == [stored(0)]
    restarted.add([stored(2)])
    assert FileEventKeep(keep.path).left() == [stored(0), stored(2)]
    assert not (tmp_path / "k.unreadable").exists()


_ADD_AT_A_FULL_DISK = """
import resource, signal, sys
import os
import subprocess
import sys
from pathlib import Path
from bot.event_keep import FileEventKeep
from core.errors import OperationalError
from core.ports import StoredEvent
path = Path(sys.argv[1])
# The disk fills up 40 bytes into this event: the kernel writes what fits, then refuses.
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 40, resource.RLIM_INFINITY))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
big = StoredEvent(event_id="e1", topic="order.filled", ts_ms=1, payload={"pad": "x" * 400})
try:
    FileEventKeep(path).add([big])
except OSError:
    print("refused")
else:
    print("kept")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no file size limit to stand for a full disk")
def test_an_event_the_full_disk_cut_short_is_refused_and_leaves_no_fragment(
    tmp_path: Path,
) -> None:
    # A full disk takes part of a write: the keep must neither report the event kept nor
    # leave its first bytes for the next event to be appended to (one line no reader parses).
    keep = FileEventKeep(tmp_path / "k")
    keep.add([stored(0)])
    run = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _ADD_AT_A_FULL_DISK, str(keep.path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )
    assert run.stdout.strip() == "refused"
    keep.add([stored(2)])  # space again
    assert FileEventKeep(keep.path).left() == [stored(0), stored(2)]
    assert not (tmp_path / "k.unreadable").exists()


def test_a_keep_that_cannot_be_read_stops_the_start_with_one_line_naming_it(
    tmp_path: Path,
) -> None:
    # Events it may hold would be missing from the trail: no start, and an error the CLI
    # prints as one line (our error, not a traceback).
    path = tmp_path / "qt.db.unsaved-events"
    path.mkdir()
    with pytest.raises(OperationalError, match=r"qt\.db\.unsaved-events.*cannot be read"):
        FileEventKeep(path).left()
