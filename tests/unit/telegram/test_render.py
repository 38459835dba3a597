"""Telegram's pieces of a reply: chunks under the size limit, the buttons, who sent what."""

from __future__ import annotations

from telegram import User

from bot.telegram.render import (
    TEXT_LIMIT,
    caller_of,
    chunks,
    confirm_keyboard,
    for_another_bot,
    parse_button,
)


def test_chunks_keep_lines_whole_and_stay_under_the_limit() -> None:
    lines = [f"line {i} " + "x" * 90 for i in range(200)]  # ~20 000 characters
    parts = chunks("\n".join(lines))
    assert all(len(p) <= TEXT_LIMIT for p in parts)
    assert "\n".join(parts).split("\n") == lines


def test_a_line_longer_than_a_message_is_cut_and_nothing_is_empty() -> None:
    parts = chunks("a\n" + "y" * (TEXT_LIMIT * 2 + 5))
    assert [len(p) for p in parts] == [1, TEXT_LIMIT, TEXT_LIMIT, 5]
    assert chunks("") == ["-"]


def test_the_buttons_carry_the_token_and_parse_back() -> None:
    keyboard = confirm_keyboard("ab12cd34ef56")
    data = [b.callback_data for b in keyboard.inline_keyboard[0]]
    assert [parse_button(d) for d in data] == [(True, "ab12cd34ef56"), (False, "ab12cd34ef56")]
    assert parse_button("qt:y:NOT-HEX") is None and parse_button(None) is None


def test_the_caller_is_the_user_id_and_username() -> None:
    caller = caller_of(User(7, "Ann", False, username="ann"))
    assert (caller.platform, caller.user_id, caller.name) == ("telegram", "7", "ann")


def test_a_command_for_another_bot_is_not_ours() -> None:
    assert for_another_bot("/status@OtherBot", "qt_bot")
    assert not for_another_bot("/status@QT_Bot now", "qt_bot")
    assert not for_another_bot("/status", "qt_bot")
    assert not for_another_bot("", "qt_bot")
