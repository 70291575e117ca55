"""``Event`` invocations at the proxy: the payload collected, then accepted or refused.

The proxy reads an ``Event`` invoke's whole body (up to Lambda's 256 KiB) and hands
it to the asynchronous invoker (:mod:`~kfn.activator.async_invoke`), which stores it
and delivers it later through the same throttler as synchronous requests. The caller
gets 202 with the event's request id once the event is stored (at once in memory; after
JetStream's acknowledgement in the durable store), 429 while the store is full, or 503
while the store cannot take it.
"""

from __future__ import annotations

import json
from typing import Protocol

from kfn import stats
from kfn.activator import answers, event_store

#: Lambda's payload limit for asynchronous invocations.
PAYLOAD_LIMIT = 256 * 1024

TOO_LARGE = answers.error(413, "RequestEntityTooLargeException", "event payload over 256 KiB")
OFF = answers.error(400, "InvalidParameterValueException", "asynchronous invocation is off")
FULL = answers.error(
    429, "TooManyRequestsException", "the event queue is full", answers.RETRY_AFTER
)
UNAVAILABLE = answers.error(
    503, "ServiceException", "the event store cannot take the event now", answers.RETRY_AFTER
)


class Submitter(Protocol):
    """Accepts an asynchronous invocation (see :mod:`kfn.activator.async_invoke`)."""

    async def submit(self, function: stats.FunctionKey, payload: bytes) -> str: ...


async def submit(
    invoker: Submitter | None, function: stats.FunctionKey, payload: bytes
) -> answers.Answer:
    """Hand the event over; the answer says whether it was stored, and its request id."""
    if invoker is None:
        return OFF
    try:
        request_id = await invoker.submit(function, payload)
    except event_store.QueueFullError:
        return FULL
    except event_store.StoreUnavailableError:
        return UNAVAILABLE
    body = json.dumps({"requestId": request_id}).encode()
    return answers.Answer(
        202, b"application/json", body, b"Kfn-Request-Id: %s\r\n" % request_id.encode()
    )
