"""The Telegram front end from the settings: only with a token; pushes to the chats set, or
to the allowlisted telegram users' private chats."""

from __future__ import annotations

from bot.telegram.front import telegram_front
from core.config import ChatSettings

USERS = {"telegram:11": "admin", "discord:22": "viewer", "telegram:33": "viewer"}


def test_no_token_no_telegram() -> None:
    assert telegram_front(ChatSettings(users=USERS), None) is None  # type: ignore[arg-type]


def test_pushes_go_to_the_allowlisted_telegram_users_by_default() -> None:
    front = telegram_front(
        ChatSettings(telegram_token="1:abc", users=USERS),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
    )
    assert front is not None and front.chat_ids == (11, 33)


def test_configured_chats_replace_the_default() -> None:
    chat = ChatSettings(telegram_chat_ids=[-100200], users=USERS)
    assert chat.telegram_push_chats() == [-100200]
