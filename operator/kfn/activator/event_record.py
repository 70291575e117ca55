"""An ``Event`` invocation as it travels: the event, its headers in a store, and the pure
rules read from them.

A durable store (:mod:`~kfn.activator.event_jetstream`) keeps an event as a message whose
body is the payload and whose headers carry everything else a later attempt needs, in
whichever activator it runs: the request id (the function's ``aws_request_id``, the same on
every attempt), the time the event was received (its age decides ``EventAgeExceeded``), the
attempts used so far of each sort (function errors and throttles, which
:func:`kfn.retry.decide` counts apart), when the next attempt is due, and the last failed
answer (for the on-failure record).

Pure: no I/O; times are wall-clock seconds passed in, since an event outlives the process
that accepted it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Final

from kfn import retry, stats

#: The part of the last failed answer kept with an event for its on-failure record.
LAST_BODY_LIMIT: Final = 1024
#: How long a function the activator does not know may stay unknown before its events are
#: given up (``ResourceNotFound``): a Function created a moment ago may reach one
#: activator's watch a little after another's, which accepted the event.
MISSING_GRACE: Final = 5.0
#: How soon an event of a function not known (yet) is tried again, within the grace.
MISSING_RETRY: Final = 1.0

REQUEST_ID: Final = "Kfn-Request-Id"
FUNCTION: Final = "Kfn-Function"
RECEIVED: Final = "Kfn-Received"
STORED: Final = "Kfn-Stored"
DUE: Final = "Kfn-Due"
ATTEMPTS: Final = "Kfn-Attempts"
THROTTLES: Final = "Kfn-Throttles"
LAST_STATUS: Final = "Kfn-Last-Status"
LAST_FUNCTION_ERROR: Final = "Kfn-Last-Function-Error"
LAST_BODY: Final = "Kfn-Last-Body"
#: JetStream's de-duplication id: the same put sent twice is stored once.
MSG_ID: Final = "Nats-Msg-Id"


class InvalidRecordError(ValueError):
    """A stored message is not an event kfn wrote (a stranger published to the subjects)."""


@dataclasses.dataclass(slots=True)
class Event:
    """An accepted asynchronous invocation."""

    function: stats.FunctionKey
    request_id: str
    payload: bytes
    #: Wall-clock seconds when the event was accepted.
    received: float
    #: Function errors so far (each uses one of the retries).
    attempts: int = 0
    #: Throttled attempts so far (they use no retry, only time).
    throttled: int = 0
    last: retry.Outcome | None = None
    #: Wall-clock seconds before which the next attempt must not start.
    due: float = 0.0


def subject(prefix: str, function: stats.FunctionKey) -> str:
    """The store subject of a function's events: ``<prefix>.<namespace>.<name>``.

    Names are DNS labels; a dot, which would add a subject token, is replaced anyway.
    """
    return f"{prefix}.{_token(function.namespace)}.{_token(function.name)}"


def _token(text: str) -> str:
    return text.replace(".", "_").replace("*", "_").replace(">", "_") or "_"


def headers(event: Event, *, stored: float) -> dict[str, str]:
    """The headers that carry ``event`` (all but its payload), put at ``stored``."""
    result = {
        REQUEST_ID: event.request_id,
        FUNCTION: str(event.function),
        RECEIVED: repr(event.received),
        STORED: repr(stored),
        DUE: repr(max(event.due, event.received)),
        ATTEMPTS: str(event.attempts),
        THROTTLES: str(event.throttled),
        # Each put of an event differs (the due time moves even when no counter does), so
        # the window drops only the same put sent twice.
        MSG_ID: f"{event.request_id}/{event.attempts}/{event.throttled}/{event.due!r}",
    }
    last = event.last
    if last is not None:
        result[LAST_STATUS] = str(last.status)
        result[LAST_FUNCTION_ERROR] = "1" if last.function_error else "0"
        result[LAST_BODY] = base64.b64encode(last.body[:LAST_BODY_LIMIT]).decode()
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """An event read back from its headers, and when it was put."""

    event: Event
    stored: float


def read(given: Mapping[str, str] | None, payload: bytes) -> Stored:
    """The event a message carries; raises :class:`InvalidRecordError` for a stranger's."""
    if not given:
        raise InvalidRecordError("no headers")
    try:
        # "ns/name" for $LATEST, "ns/name:N" for version N (str of a FunctionKey).
        namespace, _, target = given[FUNCTION].partition("/")
        name, _, version = target.partition(":")
        if not namespace or not name or not (version == "" or version.isdigit()):
            raise InvalidRecordError(f"bad {FUNCTION}: {given[FUNCTION]!r}")
        received = float(given[RECEIVED])
        last = None
        if LAST_STATUS in given:
            last = retry.Outcome(
                int(given[LAST_STATUS]),
                base64.b64decode(given.get(LAST_BODY, ""), validate=True),
                given.get(LAST_FUNCTION_ERROR) == "1",
            )
        event = Event(
            function=stats.FunctionKey(namespace, name, version),
            request_id=given[REQUEST_ID],
            payload=payload,
            received=received,
            attempts=int(given.get(ATTEMPTS, "0")),
            throttled=int(given.get(THROTTLES, "0")),
            last=last,
            due=float(given.get(DUE, repr(received))),
        )
        return Stored(event, float(given.get(STORED, repr(received))))
    except (KeyError, ValueError, binascii.Error) as exc:
        if isinstance(exc, InvalidRecordError):
            raise
        raise InvalidRecordError(f"{type(exc).__name__}: {exc}") from None


def redelivered(deliveries: int, stored: float, due: float) -> bool:
    """Whether the store hands a message out more often than kfn itself asked for.

    A message due when it was put is delivered once; one put for later (a retry) is
    fetched once early and put back until it is due, so twice. More means a holder took it
    and never ended it (an activator killed, or cut off from the store past the ack wait,
    or stopping with it not started): the function may run the event twice. The count is a
    floor: a retry first fetched after it was due is not put back, so one redelivery of it
    goes unseen.
    """
    planned = 2 if due > stored else 1
    return deliveries > planned


def on_missing(first_missing: float, now: float, grace: float = MISSING_GRACE) -> retry.Decision:
    """What to do with an event whose function the activator does not know.

    The function was deleted, or was created a moment ago and this activator's watch has
    not caught up: within ``grace`` of the first attempt that found it missing, try again
    shortly; then give the event up as ``ResourceNotFound``.
    """
    if now - first_missing >= grace:
        return retry.GiveUp("ResourceNotFound")
    return retry.Retry(MISSING_RETRY)
