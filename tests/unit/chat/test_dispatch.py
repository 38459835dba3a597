"""The dispatcher: who may run what, confirmations (same user, in time, once), usage errors,
the audit trail, and that nothing anyone sends crashes it or runs for an unknown user."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.dispatch import REFUSAL, Access, Dispatcher, split
from bot.chat.registry import BY_NAME, COMMANDS, Caller, Role
from core.clock import SimClock
from core.domain.enums import Mode
from core.domain.events import CommandHandled, Event
from core.services.bus import EventBus
from core.services.commands import Reply

ADMIN = Caller("telegram", "1", "ann")
VIEWER = Caller("telegram", "2", "bob")
STRANGER = Caller("telegram", "666", "eve")


class FakeCore:
    """Records what ran; every command answers its own name."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, tuple[Any, ...]]] = []

    def closes(self, symbol: str, count: int) -> None:
        self.ran.append(("closes", (symbol, count)))

    async def equity_history(self, days: int) -> list[Any]:
        self.ran.append(("equity_history", (days,)))
        return []

    def __getattr__(self, name: str) -> Any:
        async def run(*args: Any, **kwargs: Any) -> Reply:
            self.ran.append((name, args + tuple(kwargs.values())))
            if name == "positions":
                raise RuntimeError("boom")
            return Reply(name)

        return run


class Wall:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def dispatcher() -> tuple[Dispatcher, FakeCore, list[Event], Wall]:
    bus, seen, wall = EventBus(), [], Wall()

    async def keep(event: Event) -> None:
        seen.append(event)

    bus.subscribe(CommandHandled.topic, keep)
    core = FakeCore()
    access = Access({"telegram:1": "admin", "telegram:2": "viewer"})
    d = Dispatcher(
        core,  # type: ignore[arg-type]
        access,
        bus=bus,
        clock=SimClock(1_000),
        confirm_ttl_s=60,
        refusal_every_s=3600,
        wall=wall,
    )
    return d, core, seen, wall


def test_split_takes_the_name_without_the_slash_and_a_bot_mention() -> None:
    assert split("/Status@QuantumBot  now ") == ("status", ["now"])
    assert split("   ") == ("", [])


async def test_an_unknown_user_is_refused_once_and_nothing_runs() -> None:
    d, core, seen, wall = dispatcher()
    first = await d.handle(STRANGER, "/halt")
    assert first is not None and first.title == REFUSAL and not first.ok
    assert await d.handle(STRANGER, "/status") is None  # told once: silence
    wall.t += 3601
    assert await d.handle(STRANGER, "/status") is not None  # an hour later: once more
    assert core.ran == []
    # audited when told: a flood of strangers' messages writes no row each
    assert [(e.user_id, e.outcome, e.detail) for e in seen] == [  # type: ignore[attr-defined]
        ("666", "refused", ""),
        ("666", "refused", "1 more message(s) since the last refusal"),
    ]
    for _ in range(500):
        await d.handle(STRANGER, "/status")
        assert await d.confirm(STRANGER, "whatever") is None
    assert len(seen) == 2


async def test_roles_limit_the_commands_and_help_lists_only_the_allowed() -> None:
    d, core, _seen, _ = dispatcher()
    reply = await d.handle(VIEWER, "/halt")
    assert reply is not None and "needs the operator role; you are viewer" in reply.title
    assert core.ran == []
    viewer_help = await d.handle(VIEWER, "/help")
    admin_help = await d.handle(ADMIN, "/help")
    assert viewer_help is not None and admin_help is not None
    assert not any(line.startswith("/halt") for line in viewer_help.lines)
    assert any(line.startswith("/halt") for line in admin_help.lines)
    assert len(admin_help.lines) == len(COMMANDS)
    who = await d.handle(VIEWER, "/whoami")
    assert who is not None and who.title == "telegram:2 (bob): viewer"


async def test_a_bad_argument_gets_the_usage_never_a_traceback() -> None:
    d, core, seen, _ = dispatcher()
    for text, usage in (
        ("/trades many", "/trades [n]"),
        ("/trades 0", "/trades [n]"),
        ("/trades 1 2", "/trades [n]"),
        ("/mode sideways", "/mode [MODE|auto]"),
        ("/mode preservation for ever", "/mode [MODE|auto]"),
        ("/halt now", "/halt [flatten]"),
    ):
        reply = await d.handle(ADMIN, text)
        assert reply is not None and reply.title.startswith(f"usage: {usage}"), text
        assert not reply.ok
    assert core.ran == []
    unknown = await d.handle(ADMIN, "/frobnicate")
    assert unknown is not None and "/help lists the commands" in unknown.title
    assert {e.outcome for e in seen} == {"usage", "unknown"}


async def test_halt_runs_at_once_flatten_and_mode_changes_wait_for_the_asker() -> None:
    d, core, seen, wall = dispatcher()
    reply = await d.handle(ADMIN, "/halt")
    assert reply is not None and reply.title == "halt" and reply.confirm is None
    assert core.ran == [("halt", ("telegram:1 (ann)", False))]
    # flatten halts at once (that must not wait for a tap) and asks about the flatten only
    ask = await d.handle(ADMIN, "/halt flatten")
    assert ask is not None and ask.confirm is not None and "done at once: halt" in ask.lines
    assert core.ran[-1] == ("halt", ("telegram:1 (ann)",)) and len(core.ran) == 2
    # someone else cannot confirm it (a viewer, or an unknown user pressing the button)
    for other in (VIEWER, STRANGER):
        assert not (await d.confirm(other, ask.confirm)).ok
    done = await d.confirm(ADMIN, ask.confirm)
    assert done.title == "halt" and core.ran[-1] == ("halt", ("telegram:1 (ann)", True))
    again = await d.confirm(ADMIN, ask.confirm)  # once only
    assert not again.ok and len(core.ran) == 3
    # every mode change asks (showing the mode does not); an answer after the TTL runs nothing
    ask = await d.handle(ADMIN, "/mode expansion for 4h calm market")
    assert ask is not None and ask.confirm is not None
    wall.t += 61
    late = await d.confirm(ADMIN, ask.confirm)
    assert "expired" in late.title and len(core.ran) == 3
    shown = await d.handle(ADMIN, "/mode")
    assert shown is not None and shown.confirm is None and core.ran[-1][0] == "mode"
    ask = await d.handle(ADMIN, "/mode preservation")
    assert ask is not None and ask.confirm is not None
    await d.confirm(ADMIN, ask.confirm)
    assert core.ran[-1] == ("mode", ("telegram:1 (ann)", Mode.PRESERVATION, None, ""))
    declined = await d.handle(ADMIN, "/resume")
    assert declined is not None and declined.confirm is not None
    assert (await d.confirm(ADMIN, declined.confirm, yes=False)).title == "/resume not done"
    outcomes = [e.outcome for e in seen]
    assert outcomes.count("confirmed") == 2 and "expired" in outcomes and "declined" in outcomes


async def test_a_failing_command_answers_one_line_and_is_audited() -> None:
    d, _core, seen, _ = dispatcher()
    reply = await d.handle(ADMIN, "/positions")
    assert reply is not None and reply.title == "/positions failed: RuntimeError: boom"
    assert seen[-1].outcome == "failed" and "boom" in seen[-1].detail


def test_every_registered_command_has_a_usage_and_a_role() -> None:
    assert len(BY_NAME) == len(COMMANDS)
    for c in COMMANDS:
        assert c.usage.startswith(f"/{c.name}") and c.summary and isinstance(c.role, Role)


words = st.lists(
    st.one_of(
        st.sampled_from([f"/{c.name}" for c in COMMANDS] + ["flatten", "for", "4h", "auto", "y"]),
        st.text(max_size=12),
    ),
    max_size=5,
).map(" ".join)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from([ADMIN, VIEWER, STRANGER]), words)
def test_random_messages_never_crash_and_strangers_never_run_anything(
    caller: Caller, text: str
) -> None:
    import asyncio

    d, core, _, _ = dispatcher()

    async def go() -> Reply | None:
        reply = await d.handle(caller, text)
        if reply is not None and reply.confirm is not None:
            return await d.confirm(caller, reply.confirm)
        return reply

    reply = asyncio.run(go())
    if caller is STRANGER:
        assert core.ran == [] and (reply is None or reply.title == REFUSAL)
    if caller is VIEWER:
        assert not {"halt", "resume", "mode", "clear_mode"} & {name for name, _ in core.ran}


@pytest.mark.parametrize("bad", ["x" * 2_000, "/status " + "a" * 1_000])
async def test_a_huge_message_is_not_read(bad: str) -> None:
    d, core, _, _ = dispatcher()
    reply = await d.handle(ADMIN, bad)
    assert reply is not None and not reply.ok and core.ran == []


async def test_retrain_and_a_model_rollback_reach_the_core_with_the_asker() -> None:
    d, core, _seen, _wall = dispatcher()
    reply = await d.handle(ADMIN, "/retrain xgb")
    assert reply is not None and reply.title == "retrain"
    assert core.ran[-1] == ("retrain", ("telegram:1 (ann)", "xgb"))
    assert (await d.handle(VIEWER, "/retrain")).title.startswith("/retrain needs")  # type: ignore[union-attr]
    shown = await d.handle(VIEWER, "/models")
    assert shown is not None and shown.title == "models" and core.ran[-1] == ("models", ())
    bad = await d.handle(ADMIN, "/models rollback")
    assert bad is not None and not bad.ok and "/models rollback MEMBER" in " ".join(bad.lines)
    ask = await d.handle(ADMIN, "/models rollback xgb")  # a rollback asks first
    assert ask is not None and ask.confirm is not None and core.ran[-1][0] == "models"
    done = await d.confirm(ADMIN, ask.confirm)
    assert done.title == "rollback_model"
    assert core.ran[-1] == ("rollback_model", ("telegram:1 (ann)", "xgb"))
    # a viewer is refused before any confirmation is asked: what the arguments do needs more
    refused = await d.handle(VIEWER, "/models rollback xgb")
    assert refused is not None and not refused.ok and refused.confirm is None
    assert "needs the operator role" in refused.title
    assert core.ran[-1] == ("rollback_model", ("telegram:1 (ann)", "xgb"))
