"""Logging, configured once at start: a rotating file under the data dir plus warnings on the
console, with every configured secret redacted from every record (``core.redaction``).

``QT__APP__LOG_LEVEL`` is the level of our own packages; third-party libraries log at
``QT__APP__THIRD_PARTY_LOG_LEVEL`` (WARNING): at DEBUG aiosqlite alone writes a line per
statement, ~7,000 a second in the demo, and rotation then pushes our own lines out of the file.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from core.config import Settings
from core.errors import ConfigError
from core.redaction import Redactor, install_redactor

OUR_PACKAGES = ("bot", "core", "jobs", "storage")
_TRACEBACKS = logging.Formatter()  # formats exceptions exactly as the handlers' formatters do


class RedactSecrets(logging.Filter):
    """Mask secrets in every part of a record a handler writes: the message with its arguments,
    the exception text (the whole chain of causes) and the stack."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's parts that contain a secret; never drop a record."""
        redact = self._redactor
        if not redact.active:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # Format and arguments do not match: logging would print both raw to stderr.
            message, record.args = str(record.msg), None
        clean = redact.text(message)
        raw_args = repr(record.args) if record.args else ""
        if clean is not message or redact.text(raw_args) is not raw_args:
            record.msg, record.args = clean, None  # formatted: no raw argument survives
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            exc_text = redact.text(record.exc_text)
            if exc_text is not record.exc_text:
                # Formatters print exc_text; drop the live exception so none renders it again.
                record.exc_text, record.exc_info = exc_text, None
        if record.stack_info:
            record.stack_info = redact.text(record.stack_info)
        return True


def configure_logging(settings: Settings, console: Console) -> Path:
    """Install the process's redactor of the settings' secrets, send our INFO+ (or the
    configured level) and third parties' WARNING+ (or theirs) to ``<data_dir>/logs/qt.log`` and
    WARNING+ to the console; return the log file path."""
    log_dir = settings.app.data_dir / "logs"
    log_file = log_dir / "qt.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=10_000_000, backupCount=5, encoding="utf-8"
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot write the log file {log_file}: {exc.strerror or exc} (QT__APP__DATA_DIR "
            "must name a folder that can be created and written)"
        ) from exc
    redactor = Redactor.of(settings)
    install_redactor(redactor)  # the same masks for the audit trail and chat (the event bus)
    redact = RedactSecrets(redactor)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console_handler = RichHandler(console=console, show_path=False, level=logging.WARNING)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in (file_handler, console_handler):
        handler.addFilter(redact)
        root.addHandler(handler)
    third_party = logging.getLevelNamesMapping()[settings.app.third_party_log_level]
    root.setLevel(third_party)  # every logger not of ours inherits the root's level
    for package in OUR_PACKAGES:
        logging.getLogger(package).setLevel(settings.app.log_level)
    # Job outcomes are in our audit trail (JobRan); APScheduler's own skip notices are noise,
    # unless its debug lines were asked for.
    quiet = logging.ERROR if third_party >= logging.WARNING else third_party
    logging.getLogger("apscheduler").setLevel(quiet)
    return log_file
