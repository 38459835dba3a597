"""No configured secret ever leaves the process (issue 17, "Secrets").

Every secret setting (each ``SecretStr`` of ``Settings``, found by walking the model, so a new one
is covered without touching this file) gets a distinctive fake value. Then the offline demo, and a
short live session against the local fake venues (candles from ``tests.fakes_http``, orders on
``tests.fakes_fapi`` through the real keyed ``ccxt.binance``), run in-process with Telegram on the
fake Bot API (``tests.fakes_telegram``, one scripted 500 on the way) and Discord on a fake API that
refuses the token. Afterwards every log file, every file under the data folder, every column of
every table of every SQLite database (the audit trail included), the console and captured
stdout/stderr, and every call the fake Telegram server received are searched for the values and
for their first and last 12 characters: none may appear. The database URL's secret is its
password: the demo (which opens its own demo.sqlite) is configured with a PostgreSQL URL
carrying the fake one; the live session needs a real (SQLite) URL, which cannot carry one.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import pytest
from aiohttp import web
from pydantic import SecretStr
from rich.console import Console

from bot.app import TradingProcess
from bot.logging_setup import OUR_PACKAGES, configure_logging
from bot.modes import build_demo, build_run, venue_client
from bot.runner import run_process
from core.clock import LiveClock
from core.config import Settings, load_settings
from core.domain.enums import MarketType
from core.domain.market import timeframe_to_ms
from core.exchange.ccxt import CcxtExchange, CcxtMarketData, make_ccxt_exchange
from core.market.synthetic import generate_candles
from core.redaction import process_redactor
from core.services.execution import client_order_id
from jobs.registry import JOBS
from tests.fakes_fapi import FakeFapi, usdm_market
from tests.fakes_http import FakeBinance, point_ccxt_at, set_minimal_markets
from tests.fakes_telegram import FakeBotApi, failure, message
from tests.unit.services.engine_harness import ScriptedProvider

ADMIN = 42
HOUR_MS = timeframe_to_ms("1h")
FRAGMENT = 12  # a leaked prefix or suffix this long is a leak too
# A setting whose name says it holds a credential must be a SecretStr (masked by the redactor).
CREDENTIAL_NAME = re.compile(r"token|secret|password|passphrase|api_?key|webhook|credential")


def secret_settings() -> dict[tuple[str, str], str]:
    """Return a distinctive fake value for every SecretStr setting, keyed (section, field)."""
    values = {}
    for section, section_field in Settings.model_fields.items():
        model = section_field.annotation
        assert model is not None
        for name, f in model.model_fields.items():
            if f.annotation is SecretStr:
                digest = hashlib.sha256(f"{section}.{name}".encode()).hexdigest()
                values[(section, name)] = f"zqx{digest[:9]}LEAKCANARY{digest[9:33]}"
    return values


SECRETS = secret_settings()


def needles() -> dict[str, str]:
    """Return every string to search for, with what it is."""
    out = {}
    for (section, name), value in SECRETS.items():
        out[value] = f"{section}.{name}"
        out[value[:FRAGMENT]] = f"{section}.{name} (first {FRAGMENT} chars)"
        out[value[-FRAGMENT:]] = f"{section}.{name} (last {FRAGMENT} chars)"
    return out


def test_every_credential_setting_is_a_secret_and_gets_a_fake_value() -> None:
    credentials = {
        (section, name)
        for section, section_field in Settings.model_fields.items()
        for name in section_field.annotation.model_fields  # type: ignore[union-attr]
        if CREDENTIAL_NAME.search(name)
    }
    assert credentials, "the name pattern finds nothing: it no longer matches the settings"
    assert credentials <= set(SECRETS), (
        f"not SecretStr, so never redacted: {credentials - set(SECRETS)}"
    )
    assert {("exchange", "api_key"), ("chat", "telegram_token")} <= set(SECRETS)
    assert ("database", "url") in SECRETS  # a URL may carry a password
    settings = load_settings(**_sections())
    for (section, name), value in SECRETS.items():
        assert value in getattr(getattr(settings, section), name).get_secret_value()
    # distinct, and no fragment of one is part of an ordinary word
    assert len(set(needles())) == 3 * len(SECRETS)


def _sections(*, db_url: bool = True, **extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return load_settings' keyword sections: every secret set, merged with ``extra``; the
    database URL (unless not ``db_url``) a PostgreSQL one whose password is the fake value."""
    sections: dict[str, dict[str, Any]] = {k: dict(v) for k, v in extra.items()}
    for (section, name), value in SECRETS.items():
        if (section, name) == ("database", "url"):
            if not db_url:
                continue
            value = db_url_with(value)
        sections.setdefault(section, {})[name] = value
    return sections


def db_url_with(password: str) -> str:
    return f"postgresql+asyncpg://qt:{password}@db.invalid:5432/qt"


# --- the fakes and what they saw -----------------------------------------------------------


@dataclass
class Seen:
    """Everything that left the process in a session, to search afterwards."""

    data_dir: Path
    console: io.StringIO = field(default_factory=io.StringIO)
    chat: list[str] = field(default_factory=list)


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No QT__ variable of the caller, no stray .env; the root logger and the process's
    redactor are given back afterwards."""
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level, redactor = list(root.handlers), root.level, process_redactor()
    named = {n: logging.getLogger(n).level for n in (*OUR_PACKAGES, "apscheduler")}
    try:
        yield
    finally:
        for n, named_level in named.items():
            logging.getLogger(n).setLevel(named_level)
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        from core.redaction import install_redactor

        install_redactor(redactor)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as api:
        api.errors["getUpdates"] = [failure(500, "Internal Server Error")]  # an error path
        yield api


@pytest.fixture
async def discord_refuses(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """A fake Discord API on 127.0.0.1 that refuses every token (the refusal is logged)."""

    async def me(_request: web.Request) -> web.Response:
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    app = web.Application()
    app.router.add_get("/api/v10/users/@me", me)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    yield
    await runner.cleanup()


def _app(data_dir: Path) -> dict[str, Any]:
    # Third parties at INFO: httpx then logs every Bot API request URL, the token in its path,
    # as an operator debugging Telegram would see it.
    return {"data_dir": str(data_dir), "log_level": "DEBUG", "third_party_log_level": "INFO"}


def _chat(api: FakeBotApi) -> dict[str, Any]:
    return {
        "users": {f"telegram:{ADMIN}": "admin"},
        "telegram_api_url": api.base_url,
        "push_interval_s": 0.05,
        "discord_channel_id": 7,
    }


async def _commands(api: FakeBotApi) -> None:
    """Ask the bot what an operator would (its replies are chat messages to search)."""
    await api.wait_for("getUpdates", 2, timeout_s=20)  # connected, past the scripted 500
    for i, text in enumerate(("/status", "/health", "/balance", "/risk", "/models", "/help")):
        await api.send(message(ADMIN, text, message_id=i + 1))
    await api.wait_for("sendMessage", 6, timeout_s=20)


def _all_chat(api: FakeBotApi) -> list[str]:
    """Every parameter of every call the fake Bot API received (the token is in the path)."""
    return [f"{c.method} {c.params!r}" for c in api.calls]


# --- the sessions -------------------------------------------------------------------------


async def _demo(tmp_path: Path, api: FakeBotApi) -> Seen:
    seen = Seen(tmp_path / "demo")
    settings = load_settings(
        **_sections(
            app=_app(seen.data_dir),
            demo={"candles_per_second": 40.0, "replay_candles": 400, "history_candles": 60},
            strategy={"provider": "ema_rsi"},
            chat=_chat(api),
        )
    )
    console = Console(file=seen.console, width=200)
    configure_logging(settings, console)
    stop = asyncio.Event()

    async def ask_then_stop() -> None:
        try:
            await _commands(api)
        finally:
            stop.set()

    asker = asyncio.create_task(ask_then_stop())
    await asyncio.wait_for(
        run_process(lambda: build_demo(settings), console=console, stop=stop), 30
    )
    await asker  # its failure (a command never answered) fails the test
    seen.chat = _all_chat(api)
    return seen


async def _live(tmp_path: Path, api: FakeBotApi, monkeypatch: pytest.MonkeyPatch) -> Seen:
    seen = Seen(tmp_path / "live")
    now_ms = time.time_ns() // 1_000_000
    if HOUR_MS - now_ms % HOUR_MS < 15_000:  # an hour is about to close: let it
        await asyncio.sleep((HOUR_MS - now_ms % HOUR_MS) / 1000 + 0.5)
        now_ms = time.time_ns() // 1_000_000
    last_open = now_ms - now_ms % HOUR_MS - HOUR_MS
    n = 2_100
    series = generate_candles(
        "BTC/USDT", "1h", n, seed=5, start_ms=last_open - (n - 1) * HOUR_MS, start_price=42_000.0
    )
    for name, value in {
        "QT__TRADING__MODE": "live",
        "QT__EXCHANGE__MARKET_TYPE": "perp",
        "QT__TRADING__LIVE_CONFIRMATION": "I accept real-money risk",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(
        **_sections(
            db_url=False,  # a live process opens it: SQLite, which takes no password
            app=_app(seen.data_dir),
            trading={"symbols": ["BTC/USDT"]},
            chat=_chat(api),
        )
    )
    console = Console(file=seen.console, width=200)
    configure_logging(settings, console)
    async with FakeBinance({"BTCUSDT": series}) as candles, FakeFapi(price="42000") as fapi:
        public = make_ccxt_exchange("binance", timeout_s=5)
        public.enableRateLimit = False
        point_ccxt_at(public, candles.base_url)
        set_minimal_markets(public)
        keyed = venue_client(settings, keyed=True)  # the API key and secret, as live builds it
        keyed.enableRateLimit = False
        keyed.timeout_on_exit = 0
        point_ccxt_at(keyed, fapi.base_url)
        keyed.set_markets([usdm_market("BTC")])
        venue = CcxtExchange(
            keyed, clock=LiveClock(), market_type=MarketType.PERP, symbols=["BTC/USDT"]
        )
        entry = client_order_id("BTC/USDT", last_open, "e")
        stop = asyncio.Event()
        built: list[TradingProcess] = []

        async def build() -> TradingProcess:
            process = await build_run(settings, market_data=CcxtMarketData(public), exchange=venue)
            process.engine.signals.provider = ScriptedProvider(entries={last_open: 1})
            built.append(process)
            return process

        async def trade_then_stop() -> None:
            try:
                await _until(lambda: any(o["clientOrderId"] == entry for o in fapi.orders.values()))
                await _commands(api)
                fapi.fill(entry)
                [sync] = [s for s in JOBS if s.job_id == "venue_sync"]
                await built[0].scheduler.run_job(sync)  # the fill comes back as an event
            finally:
                stop.set()

        worker = asyncio.create_task(trade_then_stop())
        await asyncio.wait_for(run_process(build, console=console, stop=stop), 30)
        await worker
        assert fapi.requests, "the live session never reached the fake venue"
    seen.chat = _all_chat(api)
    return seen


async def _until(check: Any, timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


# --- the search ---------------------------------------------------------------------------


def _found(where: str, text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [f"{what} in {where}" for needle, what in needles().items() if needle in text]


def _database_leaks(path: Path) -> list[str]:
    """Search every value of every table: sqlite's own dump writes each row as an INSERT, texts
    quoted and blobs as X'hex' (searched for the hex of each needle too)."""
    leaks: list[str] = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        for line in db.iterdump():
            if not line.startswith("INSERT INTO"):
                continue
            table = line.split('"')[1]
            leaks += _found(f"{path.name}:{table}", line)
            upper = line.upper()
            leaks += [
                f"{what} in {path.name}:{table} (a blob)"
                for needle, what in needles().items()
                if needle.encode().hex().upper() in upper
            ]
    return leaks


def _leaks(seen: Seen, capsys: pytest.CaptureFixture[str]) -> tuple[list[str], dict[str, int]]:
    leaks: list[str] = []
    counts = {"log files": 0, "databases": 0, "tables": 0, "events": 0, "files": 0}
    for path in sorted(p for p in seen.data_dir.rglob("*") if p.is_file()):
        counts["files"] += 1
        leaks += _found(str(path.relative_to(seen.data_dir)), path.read_bytes())  # raw, WAL too
        if path.parent.name == "logs":
            counts["log files"] += 1
        if path.suffix == ".sqlite":
            counts["databases"] += 1
            leaks += _database_leaks(path)
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                counts["tables"] += db.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type='table'"
                ).fetchone()[0]
                counts["events"] += db.execute("SELECT count(*) FROM events").fetchone()[0]
    leaks += _found("the console", seen.console.getvalue())
    out = capsys.readouterr()
    leaks += _found("stdout", out.out) + _found("stderr", out.err)
    for text in seen.chat:
        leaks += _found("a Telegram call", text)
    return leaks, counts


async def test_the_demo_and_a_live_session_leak_no_secret(
    tmp_path: Path,
    clean_env: None,
    telegram: FakeBotApi,
    discord_refuses: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    demo = await _demo(tmp_path, telegram)
    demo_leaks, demo_counts = _leaks(demo, capsys)
    telegram.calls.clear()
    live = await _live(tmp_path, telegram, monkeypatch)
    live_leaks, live_counts = _leaks(live, capsys)
    leaks = demo_leaks + live_leaks
    assert not leaks, "\n".join(leaks)
    # the search had something to search: logs written, audit trails full, chat answered
    for counts in (demo_counts, live_counts):
        assert counts["log files"] >= 1 and counts["databases"] >= 1 and counts["events"] > 10
    assert "the token was refused" in (demo.data_dir / "logs" / "qt.log").read_text()
    log = (live.data_dir / "logs" / "qt.log").read_text()
    assert "LIVE trading" in log and "HTTP Request" in log  # third parties' INFO lines too
    assert "**********" in log  # the token in httpx's request URLs, masked
    assert "stopped (signal)" in live.console.getvalue()
    with sqlite3.connect(live.data_dir / "quantum_trader_live.sqlite") as db:
        topics = {r[0] for r in db.execute("SELECT topic FROM events")}
    assert {"order.submitted", "order.filled", "job.ran", "command.handled"} <= topics
    assert any("sendMessage" in c for c in demo.chat) and any("sendMessage" in c for c in live.chat)


def test_the_search_finds_a_planted_secret_in_a_blob_a_log_and_a_chat_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The search itself: a fragment in a blob column of any table, in a log file, a chat call."""
    (key, token) = (SECRETS[("exchange", "api_key")], SECRETS[("chat", "telegram_token")])
    seen = Seen(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "qt.log.1").write_text(f"GET /x?k={key[-FRAGMENT:]}\n")
    with sqlite3.connect(tmp_path / "x.sqlite") as db:
        db.execute("CREATE TABLE events (payload BLOB)")
        db.execute("CREATE TABLE other (n INTEGER, b BLOB)")
        db.execute("INSERT INTO other VALUES (1, ?)", (b"\x00" + token[:FRAGMENT].encode(),))
    seen.chat = [f"sendMessage {{'text': 'hi {token}'}}"]
    leaks, counts = _leaks(seen, capsys)
    assert sorted(leaks) == sorted(
        [
            f"exchange.api_key (last {FRAGMENT} chars) in logs/qt.log.1",
            f"chat.telegram_token (first {FRAGMENT} chars) in x.sqlite",  # the raw file
            f"chat.telegram_token (first {FRAGMENT} chars) in x.sqlite:other (a blob)",
            "chat.telegram_token in a Telegram call",
            f"chat.telegram_token (first {FRAGMENT} chars) in a Telegram call",
            f"chat.telegram_token (last {FRAGMENT} chars) in a Telegram call",
        ]
    )
    assert counts["log files"] == 1 and counts["tables"] == 2
