"""The ledger of evaluations: distinct configurations per data, controls never counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.trials import Trial, configuration, digest, record, trials_on
from core.config import load_settings
from core.errors import OperationalError


def _trial(data: str, config: str, sharpe: float | None, control: bool = False) -> Trial:
    return Trial(
        data_key=data,
        config_hash=config,
        daily_sharpe=sharpe,
        days=731,
        control=control,
        run_name="r",
        recorded_utc="2026-01-01 00:00:00",
        data={"symbols": ["BTC/USDT"]},
        config={"models": {}},
    )


def test_distinct_configurations_on_the_same_data_are_counted_once_each(tmp_path: Path) -> None:
    ledger = tmp_path / "evaluations" / "trials.jsonl"
    assert trials_on(ledger, "d1").trials == 0  # no ledger yet
    record(ledger, _trial("d1", "a", 0.02))
    record(ledger, _trial("d1", "b", -0.01))
    record(ledger, _trial("d1", "a", 0.03))  # run again: its newest result speaks for it
    record(ledger, _trial("d1", "c", None))  # no trade: a flat curve's Sharpe, 0
    record(ledger, _trial("d1", "a", 0.5, control=True))  # a control: never a trial
    record(ledger, _trial("d2", "z", 0.1))  # other data
    with ledger.open("a") as f:
        f.write('{"data_key": "d1", "config_hash": \n')  # a line cut off by a crash

    count = trials_on(ledger, "d1")
    assert count.trials == 3
    assert count.sharpes == {"a": 0.03, "b": -0.01, "c": 0.0}
    assert (count.controls, count.unreadable) == (1, 1)
    lines = ledger.read_text().splitlines()
    assert json.loads(lines[0])["data"] == {"symbols": ["BTC/USDT"]}


def test_a_ledger_that_cannot_be_written_is_an_operational_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OperationalError, match="cannot record the evaluation"):
        record(blocker / "trials.jsonl", _trial("d", "a", 0.1))


def test_the_configuration_holds_what_changes_predictions_or_trades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = load_settings()
    same = load_settings(app={"data_dir": str(tmp_path / "elsewhere")}, strategy={"ema_fast": 9})
    other = load_settings(strategy={"ensemble_threshold": 0.65})
    fewer_trees = load_settings(models={"trees": 50})

    def key(settings: object) -> str:
        return digest(configuration(settings, horizon=24, feature_set_hash="h"))  # type: ignore[arg-type]

    assert key(base) == key(same)  # where files go and the other strategy's knobs: no
    assert len({key(base), key(other), key(fewer_trees)}) == 3
    assert digest(configuration(base, horizon=12, feature_set_hash="h")) != key(base)
    assert digest(configuration(base, horizon=24, feature_set_hash="g")) != key(base)


def test_a_line_cut_off_without_its_newline_does_not_swallow_the_next_record(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "trials.jsonl"
    record(ledger, _trial("d1", "a", 0.02))
    with ledger.open("a") as f:
        f.write('{"data_key": "d1", "config_ha')  # a crash mid-write: no newline
    record(ledger, _trial("d1", "b", -0.01))

    count = trials_on(ledger, "d1")
    assert count.sharpes == {"a": 0.02, "b": -0.01}  # b is counted, not glued to the cut line
    assert count.unreadable == 1


@pytest.mark.parametrize(
    "line",
    [
        '{"data_key": "d1", "config_hash": "x", "daily_sharpe": NaN, "control": false}',
        '{"data_key": "d1", "config_hash": "x", "daily_sharpe": Infinity, "control": false}',
        '{"data_key": "d1", "config_hash": "x", "daily_sharpe": 0.1, "control": "false"}',
        '{"data_key": ["d1"], "config_hash": "x", "daily_sharpe": 0.1, "control": false}',
        '["d1", "x"]',
    ],
)
def test_a_hand_edited_line_of_the_wrong_types_is_skipped_and_counted(
    tmp_path: Path, line: str
) -> None:
    ledger = tmp_path / "trials.jsonl"
    record(ledger, _trial("d1", "a", 0.02))
    with ledger.open("a") as f:
        f.write(line + "\n")

    count = trials_on(ledger, "d1")
    assert (count.sharpes, count.controls, count.unreadable) == ({"a": 0.02}, 0, 1)


def test_a_number_written_another_way_is_the_same_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    plain = load_settings(exits={"stop_pct": "2", "tp_pcts": ["1.95", "3.25", "5.2"]})
    padded = load_settings(exits={"stop_pct": "2.0", "tp_pcts": ["1.950", "3.25", "5.20"]})
    wider = load_settings(exits={"stop_pct": "2.5"})

    def key(settings: object) -> str:
        return digest(configuration(settings, horizon=24, feature_set_hash="h"))  # type: ignore[arg-type]

    assert key(plain) == key(padded)
    assert key(plain) != key(wider)
    assert configuration(plain, horizon=24, feature_set_hash="h")["exits"]["stop_pct"] == "2"
