"""From a neutral ``Reply`` to Telegram's pieces, and from Telegram's user to our ``Caller``.

Replies are sent as plain text (no parse mode: nothing in a command's output can break the
markup or be read as a link) in chunks under Telegram's 4096-character limit; a confirmation
becomes two inline buttons whose callback data carries the dispatcher's token.
"""

from __future__ import annotations

import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, User

from bot.chat.registry import Caller
from bot.chat.render import chunks as split_text

PLATFORM = "telegram"
TEXT_LIMIT = 4096  # characters in one message (Bot API)
CAPTION_LIMIT = 1024  # characters in a photo's caption
_BUTTON = re.compile(r"^qt:(y|n):([0-9a-f]{1,48})$")  # callback data is at most 64 bytes
BUTTON_PATTERN = _BUTTON.pattern


def caller_of(user: User) -> Caller:
    """Return who sent an update, as the dispatcher names callers."""
    return Caller(PLATFORM, str(user.id), user.username or "")


def chunks(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split ``text`` into messages of at most ``limit`` characters, at line ends when it can."""
    return [piece or "-" for piece in split_text(text, limit)]  # Telegram refuses an empty one


def confirm_keyboard(token: str) -> InlineKeyboardMarkup:
    """Return the confirm / cancel buttons of a confirmation ``token``."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Confirm", callback_data=f"qt:y:{token}"),
                InlineKeyboardButton("Cancel", callback_data=f"qt:n:{token}"),
            ]
        ]
    )


def parse_button(data: str | None) -> tuple[bool, str] | None:
    """Return (confirmed?, token) from a button's callback data; None: not one of ours."""
    match = _BUTTON.match(data or "")
    if match is None:
        return None
    return match.group(1) == "y", match.group(2)


def for_another_bot(text: str, bot_username: str | None) -> bool:
    """Whether ``text`` is a command addressed to another bot (``/status@OtherBot`` in a group)."""
    head = text.split(maxsplit=1)[0] if text.strip() else ""
    if not head.startswith("/") or "@" not in head:
        return False
    return head.split("@", 1)[1].lower() != (bot_username or "").lower()
