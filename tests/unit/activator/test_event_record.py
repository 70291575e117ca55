"""An Event as a store keeps it (headers), and the pure rules read from it."""

from __future__ import annotations

import pytest

from kfn import retry, stats
from kfn.activator import event_record

FN = stats.FunctionKey("tenant-a", "resize")


def event(**fields: object) -> event_record.Event:
    base: dict[str, object] = {
        "function": FN,
        "request_id": "4d0c1a3e-0000-4000-8000-000000000001",
        "payload": b'{"x": 1}',
        "received": 1_800_000_000.25,
        "due": 1_800_000_000.25,
    }
    return event_record.Event(**{**base, **fields})  # type: ignore[arg-type]


# --- headers ---------------------------------------------------------------------------------


def test_an_event_read_back_from_its_headers_is_the_event_that_was_put() -> None:
    original = event(
        attempts=1,
        throttled=3,
        due=1_800_000_090.5,
        last=retry.Outcome(500, b'{"errorType": "Boom"}', function_error=True),
    )
    headers = event_record.headers(original, stored=1_800_000_030.0)
    read = event_record.read(headers, original.payload)
    assert read.event == original
    assert read.stored == 1_800_000_030.0


def test_an_event_for_a_version_is_read_back_for_that_version() -> None:
    original = event(function=FN._replace(version="3"))
    headers = event_record.headers(original, stored=1_800_000_030.0)
    assert headers["Kfn-Function"] == "tenant-a/resize:3"
    assert event_record.read(headers, original.payload).event == original


def test_a_new_event_has_no_last_answer_and_is_due_when_received() -> None:
    headers = event_record.headers(event(), stored=1_800_000_000.5)
    assert event_record.LAST_STATUS not in headers
    assert float(headers[event_record.DUE]) == 1_800_000_000.25
    assert event_record.read(headers, b"").event.last is None


def test_only_the_head_of_a_large_failed_answer_travels_with_the_event() -> None:
    big = event(last=retry.Outcome(500, b"x" * 10_000, function_error=True))
    read = event_record.read(event_record.headers(big, stored=0.0), b"").event
    assert read.last is not None
    assert read.last.body == b"x" * event_record.LAST_BODY_LIMIT


def test_every_put_of_one_event_has_its_own_deduplication_id() -> None:
    first = event()
    ids = {event_record.headers(first, stored=0.0)[event_record.MSG_ID]}
    # A retry of a function not known yet moves no counter, only the due time.
    ids.add(event_record.headers(event(due=first.due + 1.0), stored=0.0)[event_record.MSG_ID])
    ids.add(event_record.headers(event(throttled=1), stored=0.0)[event_record.MSG_ID])
    assert len(ids) == 3


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"Kfn-Function": "tenant-a/resize"},
        {"Kfn-Function": "no-slash", "Kfn-Request-Id": "r", "Kfn-Received": "1.0"},
        {"Kfn-Function": "a/b", "Kfn-Request-Id": "r", "Kfn-Received": "soon"},
        {"Kfn-Function": "a/b:live", "Kfn-Request-Id": "r", "Kfn-Received": "1.0"},
        {
            "Kfn-Function": "a/b",
            "Kfn-Request-Id": "r",
            "Kfn-Received": "1.0",
            "Kfn-Last-Status": "500",
            "Kfn-Last-Body": "not base64!",
        },
    ],
    ids=["none", "empty", "no-request-id", "bad-function", "bad-time", "bad-version", "bad-body"],
)
def test_a_message_kfn_did_not_write_is_refused(headers: dict[str, str] | None) -> None:
    with pytest.raises(event_record.InvalidRecordError):
        event_record.read(headers, b"{}")


def test_a_subject_has_one_token_per_namespace_and_name_whatever_they_hold() -> None:
    assert event_record.subject("kfn.events", FN) == "kfn.events.tenant-a.resize"
    odd = stats.FunctionKey("a.b", "c*>")
    assert event_record.subject("kfn.events", odd) == "kfn.events.a_b.c__"


# --- redeliveries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deliveries", "stored", "due", "redelivered"),
    [
        (1, 100.0, 100.0, False),  # a new event, delivered once
        (2, 100.0, 100.0, True),  # ... handed out again: its holder lost it
        (2, 100.0, 160.0, False),  # a retry: fetched early, put back until due
        (3, 100.0, 160.0, True),  # ... and then lost by its holder
        (1, 100.0, 160.0, False),  # a retry fetched after it was due
    ],
)
def test_a_message_handed_out_more_often_than_kfn_asked_is_a_redelivery(
    deliveries: int, stored: float, due: float, redelivered: bool
) -> None:
    assert event_record.redelivered(deliveries, stored, due) is redelivered


# --- a function not known --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing_for", "decision"),
    [
        (0.0, retry.Retry(event_record.MISSING_RETRY)),
        (4.9, retry.Retry(event_record.MISSING_RETRY)),
        (5.0, retry.GiveUp("ResourceNotFound")),
        (3600.0, retry.GiveUp("ResourceNotFound")),
    ],
)
def test_events_of_a_function_unknown_past_the_grace_end_as_resource_not_found(
    missing_for: float, decision: retry.Decision
) -> None:
    assert event_record.on_missing(1000.0, 1000.0 + missing_for, grace=5.0) == decision
