"""The Telegram front end: a thin adapter between the Bot API and the one dispatcher.

- **Lifecycle**: the PTB ``Application`` runs on our loop, started by hand (``initialize``,
  ``updater.start_polling``, ``start``; stopped in reverse) with no job queue. ``start`` returns
  at once: connecting runs in the background, retried with backoff while the network or the
  Bot API is down, so trading never waits for Telegram. A refused token (revoked, mistyped),
  at start or while serving (PTB then ends its polling: ``getUpdates`` answered 401), is
  logged once as an error naming QT__CHAT__TELEGRAM_TOKEN; Telegram is off meanwhile, the
  front end keeps reconnecting with the same backoff and serves again as soon as the token
  is accepted (no restart). Trading goes on throughout.
- **Handlers** are generated from the registry: one ``CommandHandler`` per command, one
  catch-all (so a stranger still gets the dispatcher's refusal, and a typo its answer), and
  the confirm / cancel buttons. Access, usage, confirmation and audit are the dispatcher's.
- **Push**: ``push`` sends to the configured chats (``PushTarget``); it raises on failure,
  a flood limit included, so the notifier backs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from http import HTTPStatus
from typing import Any, TypeAlias

from telegram import Bot, BotCommand, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.error import InvalidToken, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot.chat.dispatch import Dispatcher
from bot.chat.registry import COMMANDS
from bot.telegram.render import (
    BUTTON_PATTERN,
    CAPTION_LIMIT,
    caller_of,
    chunks,
    confirm_keyboard,
    for_another_bot,
    parse_button,
)
from core.config import ChatSettings
from core.services.commands import Reply

log = logging.getLogger(__name__)

MAX_REPLY_WAIT_S = 5.0  # a flood limit longer than this drops an answer (logged), not the bot
_UPDATES = ["message", "callback_query"]  # nothing else is asked of Telegram
# PTB's Application is generic over its bot, context, data and job queue: ours are the defaults.
_App: TypeAlias = "Application[Any, Any, Any, Any, Any, Any]"


class TelegramNotConnected(RuntimeError):
    """A push came while the bot is not (yet) connected to Telegram."""


class _PollingRequest(HTTPXRequest):
    """The ``getUpdates`` connection, which says when Telegram refused the token: PTB ends its
    polling then (``network_retry_loop`` gives up on ``InvalidToken``, which it raises for a
    401 or 404) and tells nobody."""

    def __init__(self) -> None:
        super().__init__()
        self.token_refused = asyncio.Event()

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        """Send as ``HTTPXRequest`` does; note the answers PTB raises ``InvalidToken`` for."""
        code, payload = await super().do_request(*args, **kwargs)
        if code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.NOT_FOUND):
            self.token_refused.set()
        return code, payload


class TelegramFront:
    """Serve the commands on Telegram and push alerts to the operators' chats."""

    name = "telegram"

    def __init__(
        self,
        dispatcher: Dispatcher,
        token: str,
        *,
        chat_ids: Sequence[int],
        base_url: str | None = None,
        base_file_url: str | None = None,
        poll_timeout_s: float = 10.0,
        connect_retry_s: tuple[float, float] = (2.0, 300.0),
    ) -> None:
        self._dispatcher = dispatcher
        self._token = token
        self.chat_ids = tuple(chat_ids)
        self._base_url = base_url
        self._base_file_url = base_file_url
        self._poll_timeout_s = poll_timeout_s
        self._retry_first_s, self._retry_max_s = connect_retry_s
        self._app: _App | None = None
        self._requests: list[HTTPXRequest] = []
        self._polling: _PollingRequest | None = None  # each _build's (an HTTP client each)
        self._token_refused = False  # said already: one error per refusal, not per retry
        self._connecting: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set once serving (tests and the bench wait on it)

    @property
    def handlers(self) -> list[BaseHandler]:  # type: ignore[type-arg]
        """Return the handlers, generated from the registry (order matters: first match)."""
        new_only = filters.UpdateType.MESSAGE  # an edited old command does not run again
        out: list[BaseHandler] = [  # type: ignore[type-arg]
            CommandHandler(c.name, self._on_message, filters=new_only) for c in COMMANDS
        ]
        out.append(MessageHandler(new_only, self._on_message))  # anything else, anyone
        out.append(CallbackQueryHandler(self._on_button, pattern=BUTTON_PATTERN))
        return out

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting in the background (see module docstring)."""
        self._connecting = asyncio.create_task(self._connect(), name="telegram-connect")

    async def stop(self) -> None:
        """Stop polling, finish the updates in hand, close the connections."""
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        if self._app is not None:
            await self._tear_down(self._app)
            self._app = None
        self.connected.clear()

    async def _connect(self) -> None:
        """Connect, serve until Telegram refuses the token, then connect again (cancelled by
        ``stop``)."""
        while True:
            app = await self._connected_app()
            self._app = app
            self.connected.set()
            if self._token_refused:
                log.warning("telegram: the bot token is accepted again; serving")
                self._token_refused = False
            log.info("telegram: serving as @%s", app.bot.username)
            assert self._polling is not None  # noqa: S101 - _build made it
            await self._polling.token_refused.wait()  # PTB's polling has ended
            self._say_token_refused()
            self.connected.clear()
            self._app = None
            await self._tear_down(app)
            await asyncio.sleep(self._retry_first_s)

    async def _connected_app(self) -> _App:
        """Return a started application, retrying with backoff until one starts."""
        delay_s = self._retry_first_s
        while True:
            app = self._build()
            try:
                await self._bring_up(app)
            except asyncio.CancelledError:  # stopped while connecting: close what opened
                await self._tear_down(app)
                raise
            except InvalidToken:
                self._say_token_refused()
                await self._tear_down(app)
            except (TelegramError, OSError, RuntimeError) as e:  # network down, API failing
                log.warning(
                    "telegram: cannot connect (%s: %s); retrying in %.0f s",
                    type(e).__name__,
                    e,
                    delay_s,
                )
                await self._tear_down(app)
            else:
                return app
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, self._retry_max_s)

    def _say_token_refused(self) -> None:
        """Log the refusal once until the token is accepted again (then retried quietly)."""
        if self._token_refused:
            return
        self._token_refused = True
        log.error(
            "telegram refused the bot token (revoked or mistyped: QT__CHAT__TELEGRAM_TOKEN); "
            "Telegram is off, trading goes on; retrying with backoff until it is accepted"
        )

    def _build(self) -> _App:
        # Our own request objects: closed by us even when initialize failed half way.
        self._polling = _PollingRequest()
        self._requests = [HTTPXRequest(), self._polling]
        builder = (
            ApplicationBuilder()
            .token(self._token)
            .job_queue(None)
            .request(self._requests[0])
            .get_updates_request(self._polling)
        )
        if self._base_url is not None:
            builder = builder.base_url(self._base_url)
        if self._base_file_url is not None:
            builder = builder.base_file_url(self._base_file_url)
        app = builder.build()
        app.add_handlers(self.handlers)
        app.add_error_handler(self._on_error)
        return app

    async def _bring_up(self, app: _App) -> None:
        await app.initialize()  # getMe: a refused token raises InvalidToken here
        try:
            await app.bot.set_my_commands([BotCommand(c.name, c.summary[:256]) for c in COMMANDS])
        except TelegramError as e:  # the menu is a convenience: the commands work without
            log.warning("telegram: cannot set the command menu (%s)", e)
        assert app.updater is not None  # noqa: S101  # built with the default updater
        # PTB retries a failed getUpdates itself, backing off from 1 s up to 30 s.
        await app.updater.start_polling(
            poll_interval=0.0,
            timeout=timedelta(seconds=self._poll_timeout_s),
            allowed_updates=_UPDATES,
            error_callback=self._polling_error,
        )
        await app.start()

    async def _tear_down(self, app: _App) -> None:
        """Undo whatever of ``_bring_up`` happened; never raise (the shutdown goes on)."""
        steps = []
        if app.updater is not None and app.updater.running:
            steps.append(app.updater.stop)
        if app.running:
            steps.append(app.stop)
        steps.append(app.shutdown)
        steps.extend(r.shutdown for r in self._requests)
        for step in steps:
            try:
                await step()
            except InvalidToken:  # the polling ended on the refused token: said already
                log.debug("telegram: the polling had ended on the refused token")
            except Exception:
                log.exception("telegram: stopping failed; the shutdown goes on")

    @staticmethod
    def _polling_error(error: TelegramError) -> None:
        # One line per failed poll: PTB retries with backoff, a traceback each time is noise.
        log.warning("telegram: polling failed (%s: %s); PTB retries", type(error).__name__, error)

    @staticmethod
    async def _on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if isinstance(error, TelegramError):  # the network or the API: one line
            log.warning("telegram: answering an update failed: %r", error)
        else:  # ours: the traceback is needed
            log.error("telegram: handling an update failed", exc_info=error)

    # --- inbound ------------------------------------------------------------------------

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:  # a channel post: nobody to answer
            return
        text = message.text or message.caption or ""
        if for_another_bot(text, context.bot.username):
            return  # /status@OtherBot in a group: not ours
        caller = caller_of(user)
        reply = await self._dispatcher.handle(caller, text)
        if reply is None:
            return
        if self._dispatcher.access.role_of(caller) is None:
            # As often as the refusal itself: how an owner finds the id to allowlist.
            log.info(
                "telegram: refused user %s (@%s); to allow: QT__CHAT__USERS "
                '\'{"telegram:%s": "admin"}\'',
                caller.user_id,
                caller.name or "-",
                caller.user_id,
            )
        await self._send(context.bot, message.chat_id, reply, reply_to=message.message_id)

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        parsed = parse_button(query.data)
        if parsed is None:
            await query.answer()
            return
        yes, token = parsed
        reply = await self._dispatcher.confirm(caller_of(query.from_user), token, yes)
        if reply is None:  # an unknown user, told already: nothing more
            await query.answer()
            return
        prompt = query.message if isinstance(query.message, Message) else None
        asker = prompt.reply_to_message.from_user if prompt and prompt.reply_to_message else None
        if asker is not None and asker.id != query.from_user.id:
            # Someone else's button (a group chat): only the presser hears the refusal.
            await query.answer(reply.title[:200], show_alert=True)
            return
        await query.answer()
        if prompt is None:
            return  # too old to edit or answer in its chat
        with contextlib.suppress(TelegramError):  # already edited: the buttons are gone anyway
            await query.edit_message_reply_markup(None)
        await self._send(context.bot, prompt.chat_id, reply, reply_to=prompt.message_id)

    async def _send(self, bot: Bot, chat_id: int, reply: Reply, *, reply_to: int) -> None:
        """Answer in ``chat_id``; a short flood limit is waited out once, a longer one drops
        the answer (logged: the command itself has run)."""
        markup = confirm_keyboard(reply.confirm) if reply.confirm else None
        try:
            await _deliver(bot, chat_id, reply, markup=markup, reply_to=reply_to)
        except RetryAfter as e:
            wait_s = _seconds(e.retry_after)
            if wait_s > MAX_REPLY_WAIT_S:
                log.warning("telegram: flood limit of %.0f s; an answer is dropped", wait_s)
                return
            await asyncio.sleep(wait_s)
            await _deliver(bot, chat_id, reply, markup=markup, reply_to=reply_to)

    # --- push ---------------------------------------------------------------------------

    async def push(self, text: str, *, silent: bool = False, photo: bytes | None = None) -> None:
        """Send ``text`` (and ``photo``) to every configured chat; raise the first failure
        once each chat was tried (a ``RetryAfter`` too: the notifier backs off)."""
        app = self._app
        if app is None:
            raise TelegramNotConnected("telegram is not connected (yet)")
        failures: list[TelegramError] = []
        for chat_id in self.chat_ids:
            try:
                await _deliver(app.bot, chat_id, Reply(text, photo=photo), silent=silent)
            except TelegramError as e:
                log.warning("telegram: push to chat %s failed (%s)", chat_id, e)
                failures.append(e)
        if failures:
            raise failures[0]


async def _deliver(
    bot: Bot,
    chat_id: int,
    reply: Reply,
    *,
    markup: InlineKeyboardMarkup | None = None,
    reply_to: int | None = None,
    silent: bool = False,
) -> None:
    """Send ``reply``: a photo with the text as its caption when it fits, text in chunks
    otherwise; the buttons go on the last message."""
    text = reply.text()
    # Quoting the command; sent all the same if that message was deleted meanwhile.
    quote = (
        None
        if reply_to is None
        else ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
    )
    if reply.photo is not None:
        fits = len(text) <= CAPTION_LIMIT
        await bot.send_photo(
            chat_id,
            reply.photo,
            caption=text if fits else reply.title[:CAPTION_LIMIT],
            reply_markup=markup if fits else None,
            disable_notification=silent,
            reply_parameters=quote,
        )
        if fits:
            return
        text, quote = "\n".join(reply.lines), None
    parts = chunks(text)
    for i, part in enumerate(parts):
        await bot.send_message(
            chat_id,
            part,
            reply_markup=markup if i == len(parts) - 1 else None,
            disable_notification=silent,
            reply_parameters=quote if i == 0 else None,
        )


def _seconds(period: float | timedelta) -> float:
    return period.total_seconds() if isinstance(period, timedelta) else float(period)


def telegram_front(chat: ChatSettings, dispatcher: Dispatcher) -> TelegramFront | None:
    """Return the Telegram front end of these settings; None when no token is set."""
    token = chat.telegram_token.get_secret_value().strip()
    if not token:
        return None
    chats = chat.telegram_push_chats()
    if not chats:
        log.warning(
            "telegram: no chat for push alerts (QT__CHAT__TELEGRAM_CHAT_IDS, or a telegram "
            "user in QT__CHAT__USERS); commands are still answered"
        )
    return TelegramFront(dispatcher, token, chat_ids=chats, base_url=chat.telegram_api_url)
