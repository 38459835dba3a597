"""The CLI's console survives a stdout that fails (`qt demo | head -2`, a full disk)."""

from __future__ import annotations

import errno
import io
import logging
import sys

import pytest
from rich.console import Console


class Gone(io.StringIO):
    """A stdout that fails on every write and flush, as a closed pipe or a full disk does."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code, self.attempts = code, 0

    def write(self, _text: str) -> int:
        self.attempts += 1
        raise OSError(self.code, "gone")

    def flush(self) -> None:
        raise OSError(self.code, "gone")


@pytest.mark.parametrize("code", [errno.EPIPE, errno.ENOSPC])
def test_the_cli_console_keeps_going_when_stdout_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    from bot.cli_common import console

    gone = Gone(code)
    monkeypatch.setattr(sys, "stdout", gone)
    with caplog.at_level(logging.WARNING):
        console.print("the status line")  # rich raised SystemExit (pipe) or OSError (disk)
        console.print("the next one")
    assert gone.attempts == 1  # a stream that failed is not written to again
    assert "console output stopped" in caplog.text
    healthy = io.StringIO()
    monkeypatch.setattr(sys, "stdout", healthy)  # another stdout (a test runner's) works
    console.print("fine")
    assert healthy.getvalue() == "fine\n"


def test_a_fail_safe_stream_passes_everything_through_while_it_works() -> None:
    from bot.fail_safe_stream import FailSafeStream

    out = io.StringIO()
    console = Console(file=FailSafeStream(lambda: out), width=40)  # type: ignore[arg-type]
    console.print("hello")
    assert out.getvalue() == "hello\n"
    assert not console.is_terminal


def test_a_closed_stdout_is_nothing_to_write_to_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot.fail_safe_stream import FailSafeStream

    # `qt run >&-`: Python sets sys.stdout to None; the console is built at import.
    console = Console(file=FailSafeStream(lambda: None))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        console.print("dropped")
        console.file.flush()
    assert not console.is_terminal
    assert caplog.text == ""
