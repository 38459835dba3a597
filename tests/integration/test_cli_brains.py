"""qt mode, qt policy and qt risk show against a database, offline."""

from __future__ import annotations

import asyncio
import json

from core.domain.decisions import AssessmentRecord
from storage import open_storage
from tests.integration.test_cli import Cli
from tests.integration.test_cli import cli as cli  # the fixture


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_mode_set_show_auto_and_the_policy_history(cli: Cli) -> None:
    shown = cli("mode", "show")
    assert shown.exit_code == 0, shown.output
    assert "no policy written yet" in _flat(shown.output)
    done = cli("mode", "set", "preservation", "--for", "4h", "--reason", "FOMC")
    assert done.exit_code == 0, done.output
    assert "mode now PRESERVATION by hand for 4h" in _flat(done.output)
    shown = _flat(cli("mode", "show").output)
    assert "mode PRESERVATION" in shown and "manual mode PRESERVATION until" in shown
    assert "FOMC" in shown
    policy = _flat(cli("policy", "show").output)
    assert "PRESERVATION" in policy and "reducing" in policy and "stop_tighten │ 0.75" in policy
    history = _flat(cli("policy", "history").output)
    assert "manual" in history and "settings" in history
    cleared = cli("mode", "auto")
    assert cleared.exit_code == 0 and "manual mode cleared" in _flat(cleared.output)
    assert "manual mode PRESERVATION until" not in _flat(cli("mode", "show").output)


def test_bad_mode_arguments_are_one_clear_error(cli: Cli) -> None:
    unknown = cli("mode", "set", "YOLO")
    assert unknown.exit_code == 2 and "unknown mode 'YOLO'" in _flat(unknown.output)
    bad = cli("mode", "set", "EMERGENCY", "--for", "soon")
    assert bad.exit_code == 2 and "a duration is a number and m, h or d" in _flat(bad.output)
    assert cli("mode", "set", "EMERGENCY", "--for", "0h").exit_code == 2
    forever = cli("mode", "set", "PRESERVATION", "--for", "99999999d")
    assert forever.exit_code == 2 and "at most 365d" in _flat(forever.output)
    long = cli("mode", "set", "PRESERVATION", "--reason", "x" * 501)
    assert long.exit_code == 2 and "at most 500 characters" in _flat(long.output)
    off = cli("mode", "set", "PRESERVATION", "--for", "1h", QT__BRAINS__ENABLED="false")
    assert off.exit_code == 2 and "the brains are off" in _flat(off.output)
    assert "no policy written yet" in _flat(cli("mode", "show").output)  # nothing written


def test_risk_show_prints_the_latest_assessment(cli: Cli) -> None:
    empty = cli("risk", "show")
    assert empty.exit_code == 0 and "no risk assessment yet" in _flat(empty.output)
    body = {
        "drawdown": 0.06,
        "tier": 1,
        "exposure_pct": 0.8,
        "concentration": 0.5,
        "correlation": 0.7,
        "components": [["var", 40.0], ["drawdown", 40.0]],
        "var_daily": [{"method": "historical", "level": 0.99, "var": 0.061, "es": 0.08}],
        "var_horizon": [],
        "tail": None,
        "measures": [{"kind": "scale_size", "value": 0.75, "reason": "drawdown tier 1"}],
        "notes": ["daily VaR scaled by sqrt(24)"],
    }

    async def write() -> None:
        storage = open_storage(f"sqlite+aiosqlite:///{cli.db_file}")
        await storage.start()
        try:
            await storage.decisions.add_assessment(
                AssessmentRecord(ts_ms=1_000, score=41.5, level="MODERATE", body=json.dumps(body))
            )
        finally:
            await storage.stop()

    asyncio.run(write())
    out = _flat(cli("risk", "show").output)
    assert "risk MODERATE 41.5/100" in out and "drawdown 6.00% (tier 1)" in out
    assert "6.100%" in out and "scale_size 0.75 (drawdown tier 1)" in out


def test_risk_show_prints_figures_json_could_not_hold(cli: Cli) -> None:
    # The service spells NaN and inf out ("nan", "inf": allow_nan=False); a two-valued tape
    # gives a Hill index of inf.
    tail = {"skew": "nan", "excess_kurtosis": -2.0, "hill_index": "inf", "hill_k": 100}
    body = {
        "drawdown": 0.0,
        "tier": 0,
        "exposure_pct": 0.5,
        "concentration": 1.0,
        "correlation": 0.0,
        "components": [["var", 10.0], ["tail", "nan"]],
        "var_daily": [{"method": "historical", "level": 0.99, "var": "inf", "es": 0.08}],
        "var_horizon": [],
        "tail": {**tail, "fat_tail": False, "score": 0.0},
        "measures": [],
        "notes": [],
    }

    async def write() -> None:
        storage = open_storage(f"sqlite+aiosqlite:///{cli.db_file}")
        await storage.start()
        try:
            await storage.decisions.add_assessment(
                AssessmentRecord(ts_ms=1_000, score=10.0, level="LOW", body=json.dumps(body))
            )
        finally:
            await storage.stop()

    asyncio.run(write())
    shown = cli("risk", "show")
    assert shown.exit_code == 0, shown.output
    out = _flat(shown.output)
    assert "Hill inf" in out and "skew nan" in out and "inf" in out


def test_a_time_out_of_the_calendar_is_printed_not_raised() -> None:
    from bot.cli_brains import _when

    assert _when(10**16) == "10000000000000000 ms"  # year 318857: a hand-edited row
    assert _when(0) == "1970-01-01 00:00 UTC"


def test_a_manual_mode_in_the_demo_runs_on_the_demo_s_market_clock(cli: Cli) -> None:
    from core.ports import StateKey

    demo_db = cli.data_dir / "demo.sqlite"
    market_ms = 1_704_067_200_000 + 40 * 3_600_000  # 2024: the demo's replay, not today

    async def write() -> str | None:
        storage = open_storage(f"sqlite+aiosqlite:///{demo_db}")
        await storage.start()
        try:
            if not await storage.decisions.list_assessments(1):
                await storage.decisions.add_assessment(
                    AssessmentRecord(ts_ms=market_ms, score=10.0, level="LOW", body="{}")
                )
                return None
            return await storage.state.get(StateKey.MANUAL_MODE)
        finally:
            await storage.stop()

    asyncio.run(write())
    done = cli("mode", "set", "PRESERVATION", "--for", "4h", "--demo")
    assert done.exit_code == 0, done.output
    manual = json.loads(asyncio.run(write()) or "{}")
    assert manual["until_ms"] == market_ms + 4 * 3_600_000
