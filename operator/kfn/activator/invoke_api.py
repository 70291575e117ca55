"""The invoke API's gate: which invocations the proxy takes, and the request id each carries.

A request the router matched to ``/_kfn/functions/{namespace}/{name}/invoke`` must be
a ``POST``; ``Kfn-Invocation-Type`` (or Lambda's ``X-Amz-Invocation-Type``) chooses
``RequestResponse`` (the default: proxied to the pod's invoke path) or ``Event``
(accepted at once, see :mod:`~kfn.activator.events`). Anything else is refused in
Lambda's error shape.

An invoke keeps its caller's request id (``Kfn-Request-Id``, when it is one plain
header value), so a trigger worker's retries of one event carry one
``aws_request_id``, as Lambda's asynchronous retries do; every other request gets a
new id, unique per activator process and cheaper than a UUID on the hot path.
"""

from __future__ import annotations

import itertools
import os
from typing import Final, Literal

from kfn.activator import answers

SYNC: Final = "sync"
EVENT: Final = "event"
NOT_POST = answers.error(405, "InvalidRequestContentException", "invoke with POST")
UNKNOWN_TYPE = answers.error(400, "InvalidParameterValueException", "unknown invocation type")

_request_prefix = os.urandom(6).hex().encode()
_request_counter = itertools.count(1)


Kind = Literal["sync", "event"] | answers.Answer


def gate(method: bytes, invocation_type: bytes) -> Kind:
    """How an invoke is served, or the answer that refuses it."""
    if method != b"POST":
        return NOT_POST
    if invocation_type == b"Event":
        return EVENT
    if invocation_type in (b"", b"RequestResponse"):
        return SYNC
    return UNKNOWN_TYPE


def request_id(given: bytes = b"") -> bytes:
    """``given`` (a caller's id on the invoke API; empty otherwise), or a new id."""
    return given or b"%s-%x" % (_request_prefix, next(_request_counter))
