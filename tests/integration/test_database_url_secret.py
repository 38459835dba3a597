"""The database URL is a secret for its password (issue 17, "Secrets"): a URL may carry one
(``postgresql://user:password@host/db``, refused at start, or a SQLite URL written with one).
It is masked in ``qt config show``, in every refusal of the URL, and in the log."""

from __future__ import annotations

import json

import pytest

from core.config import load_settings
from core.errors import ConfigError
from core.redaction import REDACTED, Redactor, masked_url
from storage import open_storage
from tests.integration.test_cli import Cli, cli  # noqa: F401  (the fixture)

PASSWORD = "pw9LEAKCANARYdb7x"
URLS = (
    f"postgresql+asyncpg://qt:{PASSWORD}@db.invalid:5432/qt",  # another database: refused
    f"sqlite+aiosqlite://qt:{PASSWORD}@/qt.sqlite",  # SQLite takes no password: refused
    f"sqlite+aiosqlite://qt:{PASSWORD}@db:port/qt",  # not a valid URL at all
)


def test_config_show_masks_the_password_of_the_database_url(cli: Cli) -> None:  # noqa: F811
    for url in URLS:
        result = cli("config", "show", QT__DATABASE__URL=url)
        assert result.exit_code == 0, result.output
        assert PASSWORD not in result.output
        shown = json.loads(result.stdout)["database"]
        assert shown["url"] == shown["effective_url"] == url.replace(PASSWORD, REDACTED)
    plain = json.loads(cli("config", "show").stdout)["database"]  # nothing to mask
    assert plain["url"] == "" and plain["effective_url"] == f"sqlite+aiosqlite:///{cli.db_file}"


def test_every_refusal_of_the_database_url_leaves_its_password_out(cli: Cli) -> None:  # noqa: F811
    said = []
    for url in URLS:
        result = cli("db", "upgrade", QT__DATABASE__URL=url)
        assert result.exit_code != 0
        assert PASSWORD not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)  # no trace
        said.append(" ".join(result.output.split()))
        with pytest.raises(ConfigError) as refused:
            open_storage(url)
        assert PASSWORD not in str(refused.value)
    assert "only SQLite is supported" in said[0]
    assert "names a user, password or host" in said[1] and REDACTED in said[1]
    assert "is not a valid database URL" in said[2] and REDACTED in said[2]


def test_the_redactor_masks_the_database_password_as_written_and_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QT__DATABASE__URL", raising=False)
    encoded = "p%40ss" + PASSWORD  # "p@ss..." in the URL's own encoding
    url = f"postgresql://qt:{encoded}@db.invalid/qt"
    settings = load_settings(database={"url": url})
    assert settings.database_url == url  # what storage is given: the URL itself
    assert PASSWORD not in repr(settings)
    redactor = Redactor.of(settings)
    text = f"connect to {url} as qt / p@ss{PASSWORD} failed"
    assert redactor.text(text) == (
        f"connect to postgresql://qt:{REDACTED}@db.invalid/qt as qt / {REDACTED} failed"
    )
    assert masked_url(url) == f"postgresql://qt:{REDACTED}@db.invalid/qt"
    # A URL without a password is no secret: the path it names stays readable.
    sqlite = load_settings(database={"url": "sqlite+aiosqlite:///data/qt.sqlite"})
    assert not Redactor.of(sqlite).active
