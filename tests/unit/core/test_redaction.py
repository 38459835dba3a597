"""The one redactor: every configured secret masked in text and in every string a value holds."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import load_settings
from core.domain.events import JobRan
from core.redaction import REDACTED, Redactor

KEY = "KEY-0123456789abcdef"
SECRET = "sec/ret+with=signs"


def test_masks_each_secret_as_given_and_url_encoded() -> None:
    redact = Redactor([KEY, SECRET])
    text = f"GET /v1?AccessKeyId={KEY}&x=sec%2Fret%2Bwith%3Dsigns and {SECRET}"
    assert redact.text(text) == f"GET /v1?AccessKeyId={REDACTED}&x={REDACTED} and {REDACTED}"


def test_short_values_are_not_secrets_and_text_without_one_is_left_alone() -> None:
    redact = Redactor(["abc", ""])
    assert not redact.active
    text = "abc is everywhere"
    assert redact.text(text) is text


def test_a_secret_containing_another_is_masked_whole() -> None:
    assert Redactor(["abcd", "abcd-longer"]).text("x abcd-longer y") == f"x {REDACTED} y"


def test_built_from_every_secret_in_the_settings() -> None:
    settings = load_settings(exchange={"api_key": KEY, "api_secret": SECRET})
    assert Redactor.of(settings).text(f"{KEY} {SECRET}") == f"{REDACTED} {REDACTED}"


@dataclass(frozen=True, slots=True)
class _Nested:
    notes: tuple[str, ...]
    extra: dict[str, str]


def test_values_are_masked_in_every_string_they_hold() -> None:
    redact = Redactor([KEY])
    event = JobRan(ts_ms=1, job_id="equity_snapshot", ok=False, detail=f"NetworkError: {KEY}")
    clean = redact.value(event)
    assert (clean.detail, clean.event_id, clean.job_id) == (
        f"NetworkError: {REDACTED}",
        event.event_id,
        "equity_snapshot",
    )
    nested = redact.value(_Nested(notes=("a", KEY), extra={"url": f"?k={KEY}"}))
    assert nested == _Nested(notes=("a", REDACTED), extra={"url": f"?k={REDACTED}"})


def test_a_value_without_secrets_is_returned_as_it_is() -> None:
    event = JobRan(ts_ms=1, job_id="x", ok=True, detail="fine")
    assert Redactor([KEY]).value(event) is event
    assert Redactor([]).value(event) is event
