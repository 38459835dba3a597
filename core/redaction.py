"""Secret redaction for every text that leaves the process: log records, stored events, chat.

One ``Redactor``, built at start from the configured secrets and installed process-wide with
:func:`install_redactor` (logging set-up does it), masks them wherever they would be written:
the logging filter runs every record through it, the event bus every event before the audit
trail or a subscriber (a chat push, the console) sees it, the trading state its stored reason.
Exception texts are the usual carrier: ccxt puts request URLs in its messages, and a venue that
signs in the query string (htx: ``AccessKeyId=<API key>``) puts the API key there.

A URL setting (``QT__DATABASE__URL``) is a secret for its password only
(``scheme://user:password@host/...``): that is masked, the rest of the URL (the file it names)
stays readable wherever it is shown (``masked_url``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, quote_plus, unquote, urlsplit

if TYPE_CHECKING:
    from core.config import Settings

REDACTED = "**********"
MIN_SECRET_CHARS = 4  # a shorter value would mask ordinary words and numbers
URL_FIELD = "url"  # a secret setting of this name is a URL: only its password is secret

T = TypeVar("T")


class Redactor:
    """Replace secret values (as given, and URL-encoded, as they appear in request URLs)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_CHARS:
                needles.update((secret, quote(secret, safe=""), quote_plus(secret)))
        # Longest first, so a secret that contains another is masked whole.
        self._needles = tuple(sorted(needles, key=len, reverse=True))

    @classmethod
    def of(cls, settings: Settings) -> Redactor:
        """Return the redactor of every non-empty secret in ``settings``."""
        from pydantic import SecretStr  # settings exist: pydantic is imported already

        secrets = []
        for _, section in settings:
            for key, value in section:
                if isinstance(value, SecretStr) and (secret := value.get_secret_value()):
                    if key == URL_FIELD:  # as written, and decoded (as a driver has it)
                        password = url_password(secret)
                        secrets += [password, unquote(password)]
                    else:
                        secrets.append(secret)
        return cls(s for s in secrets if s)

    @property
    def active(self) -> bool:
        """Return whether there is anything to mask."""
        return bool(self._needles)

    def text(self, text: str) -> str:
        """Return ``text`` with every secret masked (the same object when it holds none)."""
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text

    def value(self, value: T) -> T:
        """Return ``value`` with the secrets masked in every string it holds: dataclass fields
        (an event), tuples, lists and dicts, recursively; the same object when it holds none."""
        if not self._needles:
            return value
        return self._walk(value)  # type: ignore[no-any-return]

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {}
            for f in dataclasses.fields(value):
                if f.init:
                    old = getattr(value, f.name)
                    new = self._walk(old)
                    if new is not old:
                        changes[f.name] = new
            return dataclasses.replace(value, **changes) if changes else value
        if isinstance(value, tuple | list):
            items = [self._walk(v) for v in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            if hasattr(value, "_fields"):  # a named tuple takes its fields one by one
                return type(value)(*items)
            return type(value)(items)
        if isinstance(value, dict):
            pairs = [(self._walk(k), self._walk(v)) for k, v in value.items()]
            if all(
                k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items(), strict=True)
            ):
                return value
            return dict(pairs)
        return value


def url_password(url: str) -> str:
    """Return the password a URL carries (``scheme://user:password@host/...``), else ""."""
    try:
        return urlsplit(url).password or ""
    except ValueError:  # not a URL (a bad port, ...): nothing to take from it
        return ""


def masked_url(url: str) -> str:
    """Return ``url`` with its password masked (the same text when it carries none)."""
    password = url_password(url)
    return Redactor((password, unquote(password))).text(url) if password else url


_process_redactor = Redactor(())


def install_redactor(redactor: Redactor) -> None:
    """Make ``redactor`` the process's (once, at start, with the settings' secrets)."""
    global _process_redactor
    _process_redactor = redactor


def process_redactor() -> Redactor:
    """Return the process's redactor (one that masks nothing until one is installed)."""
    return _process_redactor
