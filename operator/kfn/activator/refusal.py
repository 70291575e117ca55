"""Requests a runtime refused without starting them: recognised, to be sent again.

The runtime contract (sections 3 and 6): over its concurrency a runtime answers 429,
while draining 503, each with ``Retry-After``, no ``Kfn-Function-Error`` and a fixed
body, and without starting the handler. Such a request is safe to send again. The
exchange holds a candidate response back (:class:`Held`) until its body shows
whether it is such a refusal; if it is, the request gives its slot back and is sent
again (its bytes were kept, :mod:`~kfn.activator.request_body`) after
:func:`retry_delay`. A function's own 429 or 503 is passed on.
"""

from __future__ import annotations

import json
from typing import NamedTuple

#: The statuses of a refusal.
STATUSES = (429, 503)
#: Longest body of a candidate that is held back to be recognised.
HOLD_LIMIT = 4096
# The bodies with which the runtime refuses: on the invoke path in Lambda's error
# shape, on an HTTP route as the API Gateway says it.
_INVOKE_TYPES = (b'"TooManyRequestsException"', b'"ServiceUnavailableException"')
_HTTP_BODIES = ({"message": "Too Many Requests"}, {"message": "Service Unavailable"})


class Held(NamedTuple):
    """A response held back until its body is known."""

    status: int
    reason: bytes
    headers: bytes
    body: bytearray


def candidate(headers: bytes) -> bool:
    """Whether a 429/503 head may be the runtime's refusal (its body decides)."""
    lower = headers.lower()
    return b"retry-after:" in lower and b"kfn-function-error:" not in lower


def not_started(body: bytearray, *, invoke: bool) -> bool:
    """Whether a held candidate's body is the runtime's refusal of a request it never started."""
    if invoke:
        return any(marker in body for marker in _INVOKE_TYPES)
    try:
        return json.loads(body) in _HTTP_BODIES
    except ValueError:
        return False


def retry_delay(retries: int) -> float:
    """The pause before sending again: short and growing, so two activators sharing one
    busy pod do not spin (the request's own timeout still bounds it)."""
    return min(0.002 * 2.0**retries, 0.1)
