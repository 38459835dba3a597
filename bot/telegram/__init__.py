"""The Telegram front end: python-telegram-bot's Application on our loop, its handlers
generated from the command registry, replies rendered from the neutral ``Reply``, and push
alerts to the operators' chats (``TelegramFront``)."""

import os

# Opt in to PTB's coming time periods now (``timedelta``, not int seconds): without it, merely
# constructing a ``RetryAfter`` warns that the int form is deprecated, on every flood limit.
os.environ.setdefault("PTB_TIMEDELTA", "true")
