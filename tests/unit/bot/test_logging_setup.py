"""Logging: configured secrets never reach the log file or the console, wherever a record
carries them (message, arguments, exception text with its causes, stack)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from bot.logging_setup import OUR_PACKAGES, RedactSecrets, configure_logging
from core.config import load_settings
from core.errors import DependencyError
from core.redaction import REDACTED, Redactor, install_redactor, process_redactor

KEY = "KEY-0123456789abcdef"
SECRET = "SEC-fedcba9876543210"
URL = f"https://api.hbdm.com/swap-api/v1/swap_account_info?AccessKeyId={KEY}&Signature=x"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Give the root logger and the process redactor back as they were."""
    root = logging.getLogger()
    handlers, level, redactor = list(root.handlers), root.level, process_redactor()
    named = {name: logging.getLogger(name).level for name in (*OUR_PACKAGES, "apscheduler")}
    try:
        yield
    finally:
        for name, named_level in named.items():
            logging.getLogger(name).setLevel(named_level)
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        install_redactor(redactor)


def _configured(tmp_path: Path) -> tuple[Path, io.StringIO]:
    settings = load_settings(
        app={"data_dir": str(tmp_path)}, exchange={"api_key": KEY, "api_secret": SECRET}
    )
    screen = io.StringIO()
    return configure_logging(settings, Console(file=screen, width=200)), screen


def _failing_call() -> None:
    try:
        raise OSError(f"Cannot connect to host for {URL}")  # what aiohttp/ccxt say
    except OSError as e:
        raise DependencyError(f"htx fetch_balance: NetworkError: htx GET {URL}") from e


@pytest.mark.usefixtures("restored_logging")
def test_secrets_are_masked_in_messages_arguments_and_tracebacks(tmp_path: Path) -> None:
    log_file, screen = _configured(tmp_path)
    log = logging.getLogger("qt.test")
    log.warning("venue call %s failed", URL)
    log.warning("keys %r", {"apiKey": KEY, "secret": SECRET})
    try:
        _failing_call()
    except DependencyError:
        log.exception("job equity_snapshot failed")
    for handler in logging.getLogger().handlers:
        handler.flush()

    text = log_file.read_text()
    for shown in (text, screen.getvalue()):
        assert KEY not in shown and SECRET not in shown
        assert REDACTED in shown
    assert "job equity_snapshot failed" in text
    assert "DependencyError: htx fetch_balance: NetworkError" in text  # the traceback stays
    assert "OSError: Cannot connect to host" in text  # and its cause


def test_a_records_stack_and_arguments_are_masked_too() -> None:
    record = logging.LogRecord("qt", logging.ERROR, __file__, 1, "got %s", (KEY,), None)
    record.stack_info = f'Stack (most recent call last):\n  File "x.py", line 1\n    call("{KEY}")'
    assert RedactSecrets(Redactor([KEY])).filter(record)
    assert (record.getMessage(), record.args) == (f"got {REDACTED}", None)
    assert record.stack_info is not None and KEY not in record.stack_info


def _logged_at(tmp_path: Path, **app: str) -> str:
    settings = load_settings(app={"data_dir": str(tmp_path), **app})
    log_file = configure_logging(settings, Console(file=io.StringIO()))
    for name in ("aiosqlite", "ccxt.base.exchange", "apscheduler.scheduler", "core.x", "bot.y"):
        logging.getLogger(name).debug("debug from %s", name)
        logging.getLogger(name).warning("warning from %s", name)
    for handler in logging.getLogger().handlers:
        handler.flush()
    return log_file.read_text()


@pytest.mark.usefixtures("restored_logging")
def test_debug_is_ours_only_third_party_libraries_stay_at_warning(tmp_path: Path) -> None:
    text = _logged_at(tmp_path, log_level="DEBUG")
    assert "debug from core.x" in text and "debug from bot.y" in text
    assert "debug from aiosqlite" not in text and "debug from ccxt" not in text
    assert "warning from aiosqlite" in text and "warning from ccxt.base.exchange" in text
    assert "apscheduler.scheduler" not in text  # its skip notices are noise (JobRan has them)


@pytest.mark.usefixtures("restored_logging")
def test_third_party_debug_lines_when_asked_for(tmp_path: Path) -> None:
    text = _logged_at(tmp_path, log_level="INFO", third_party_log_level="DEBUG")
    assert "debug from aiosqlite" in text and "debug from apscheduler.scheduler" in text
    assert "debug from core.x" not in text and "warning from core.x" in text
