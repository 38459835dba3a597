"""/models says which method sizes entries and why, beside the models that trade."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from core.clock import SimClock
from core.services.bus import EventBus
from core.services.commands import CommandCore, CommandServices
from core.services.sizing_service import SizingService
from core.services.sizing_sources import FallbackReason, RefusedSizing
from storage.memory import MemoryStorage

NOW = 1_700_000_000_000


def core(sizing: SizingService, members: tuple[str, ...] = ()) -> CommandCore:
    engine = SimpleNamespace(signals=SimpleNamespace(provider=SimpleNamespace(name="ema_rsi")))
    engine.sizing = sizing
    services: Any = dict.fromkeys(("exchange", "trading_state", "policy", "portfolio"))
    return CommandCore(
        CommandServices(
            clock=SimClock(NOW),
            bus=EventBus(),
            storage=MemoryStorage(),
            engine=engine,  # type: ignore[arg-type]
            quote="USDT",
            mode_label="run",
            models=lambda: members,
            **services,
        )
    )


async def test_models_names_the_sizing_method_and_a_refusal() -> None:
    clock, bus = SimClock(NOW), EventBus()
    fixed = await core(SizingService(bus=bus, clock=clock)).models()
    assert fixed.title == "ema_rsi trades; no model serves (a baseline)"
    assert fixed.lines == ("sizing: fixed",)

    refused = RefusedSizing("rl", FallbackReason.UNGATED, "never judged")
    reply = await core(SizingService(bus=bus, clock=clock, source=refused), ("xgb v1",)).models()
    assert reply.lines == (
        "xgb v1",
        "sizing: rl; every entry sizes fixed now (ungated: never judged)",
    )
