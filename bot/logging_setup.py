"""Logging, configured once at start: a rotating file under the data dir plus warnings on the
console, with every configured secret redacted from every record."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.logging import RichHandler

from core.config import Settings

REDACTED = "**********"


class RedactSecrets(logging.Filter):
    """Replace secret values in log messages (and their arguments) with a fixed mask."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message when it contains a secret."""
        if not self._secrets:
            return True
        message = record.getMessage()
        if any(s in message for s in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, None
        return True


def secrets_of(settings: Settings) -> list[str]:
    """Return every non-empty secret value in the settings."""
    return [
        value.get_secret_value()
        for _, section in settings
        for _, value in section
        if isinstance(value, SecretStr) and value.get_secret_value()
    ]


def configure_logging(settings: Settings, console: Console) -> Path:
    """Send INFO+ (or the configured level) to ``<data_dir>/logs/qt.log`` and WARNING+ to the
    console; return the log file path."""
    log_dir = settings.app.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "qt.log"
    redact = RedactSecrets(secrets_of(settings))
    file_handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=10_000_000, backupCount=5, encoding="utf-8"
    )
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console_handler = RichHandler(console=console, show_path=False, level=logging.WARNING)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in (file_handler, console_handler):
        handler.addFilter(redact)
        root.addHandler(handler)
    root.setLevel(settings.app.log_level)
    # Job outcomes are in our audit trail (JobRan); APScheduler's own skip notices are noise.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    return log_file
