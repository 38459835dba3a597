"""A sizing fallback reaches the operator: pushed to chat as an alert and printed by the
console; an explained entry's WHY line says how it was sized."""

from __future__ import annotations

from rich.console import Console

from bot.chat.render import ALERT_KINDS, TOPICS, Push, Renderer
from bot.console import _event_line
from core.domain.events import EntryExplained, SizingFallback
from core.domain.explanations import EntryExplanation, SizingNote

FELL_BACK = SizingFallback(
    ts_ms=1_704_067_200_000,
    method="rl",
    reason="stale",
    detail="trained on trades up to 40.0 days ago, more than the 30 allowed",
    symbol="BTC/USDT",
)


def plain(event: object) -> str:
    line = _event_line(event)  # type: ignore[arg-type]
    assert line is not None
    console = Console(width=400, record=True)
    console.print(line)
    return console.export_text().strip()


def test_a_fallback_is_pushed_as_a_loud_alert() -> None:
    push = Renderer().render(FELL_BACK)
    assert push == Push(
        "alert",
        "SIZING rl -> fixed (stale): trained on trades up to 40.0 days ago, more than the 30 "
        "allowed",
    )
    assert SizingFallback.topic in TOPICS and ALERT_KINDS["alert"] == "loud"


def test_the_console_prints_the_fallback_and_the_sizing_of_an_explained_entry() -> None:
    assert "SIZING rl falls back to fixed (stale): trained on trades" in plain(FELL_BACK)
    why = EntryExplanation(
        provider="ensemble", p_up=0.6, members=(), regime="range", top_features=()
    )
    explained = EntryExplained(
        ts_ms=FELL_BACK.ts_ms,
        trade_id="t",
        symbol="BTC/USDT",
        side="long",
        explanation=why,
        sizing=SizingNote(method="fixed", multiplier=1.0, fallback="stale"),
    )
    assert plain(explained).endswith("sized fixed x1.00 (fell back: stale)")
    unsized = EntryExplained(
        ts_ms=FELL_BACK.ts_ms, trade_id="t", symbol="BTC/USDT", side="long", explanation=why
    )
    assert "sized" not in plain(unsized)
