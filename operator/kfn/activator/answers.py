"""The activator's own answers: the responses it writes without asking a pod.

Errors take Lambda's shape (``{"errorType": ..., "errorMessage": ...}``), so a
caller of the invoke API reads the activator's refusals as it reads a function's
own errors. The fixed ones are built once, at import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from kfn.activator import exits

#: Reason phrases of the statuses the activator answers itself (any other says "OK").
_REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    499: b"Client Closed Request",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
#: Sent with every refusal that says "not now": the caller may come back in a second.
RETRY_AFTER = b"Retry-After: 1\r\n"


class Answer(NamedTuple):
    """A complete response of the activator's own; ``extra`` holds whole header lines."""

    status: int
    content_type: bytes
    body: bytes
    extra: bytes = b""


def error(status: int, error_type: str, message: str, extra: bytes = b"") -> Answer:
    """An error in Lambda's shape."""
    body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return Answer(status, b"application/json", body, extra)


def encode(answer: Answer, *, close: bool, request_id: bytes = b"") -> bytes:
    """The answer as bytes on the wire; ``close`` adds ``Connection: close``, a
    ``request_id`` (an invoke's) ``Kfn-Request-Id``; an answer without a body has no
    ``Content-Type``."""
    extra = answer.extra
    if request_id:
        extra += b"Kfn-Request-Id: %s\r\n" % request_id
    return b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n%s%s\r\n%s" % (
        answer.status,
        _REASONS.get(answer.status, b"OK"),
        b"Content-Type: %s\r\n" % answer.content_type if answer.content_type else b"",
        len(answer.body),
        extra,
        b"Connection: close\r\n" if close else b"",
        answer.body,
    )


HEALTHY = Answer(200, b"text/plain", b"ok\n")
DRAINING = Answer(503, b"text/plain", b"draining\n")
NO_FUNCTION = error(404, "ResourceNotFoundException", "no function serves this request")
INVOKE_ELSEWHERE = error(
    404,
    "ResourceNotFoundException",
    "the invoke API is not served here: send it to the activator's invoke Service "
    "(kfn-invoke unless the release is named otherwise), with a bearer token",
)
ROUTES_ELSEWHERE = error(
    404,
    "ResourceNotFoundException",
    "this port serves only the invoke API (POST /_kfn/functions/<namespace>/<name>/invoke); "
    "HTTP Trigger routes are served by the activator's public Service (kfn-activator)",
)
CONNECT_FAILED = error(502, "ServiceException", "could not connect to the function")
#: Marks an answer as the function's own failure, as the runtime marks its errors (runtime
#: contract §3) and Lambda its ``X-Amz-Function-Error``: callers count it against retries.
FUNCTION_ERROR = b"Kfn-Function-Error: Unhandled\r\n"
# Past the activator's own bounds (kfn.activator.bounds): the client's request, or load.
HEAD_TIMEOUT = error(408, "RequestTimeoutException", "the request head did not arrive in time")
TOO_MANY_CONNECTIONS = error(
    503,
    "TooManyRequestsException",
    "the activator has too many open connections; retry shortly",
    RETRY_AFTER,
)
BUFFERS_FULL = error(
    503,
    "TooManyRequestsException",
    "the activator holds too many request bytes waiting for functions; retry shortly",
    RETRY_AFTER,
)
# A stopping activator could not send the request to a pod in time for its drain to serve it
# whole (kfn.activator.waiting.stop_left): 429 as past the queue timeout, since it never ran.
STOPPING_BEFORE_CAPACITY = error(
    429,
    "TooManyRequestsException",
    "Rate Exceeded: no pod of this function was free in time for this activator, which is "
    "stopping, to serve the request within its drain. Retry after Retry-After: another "
    "activator serves it",
    RETRY_AFTER,
)


def header_lines(headers: Mapping[str, str]) -> bytes:
    """Headers as whole lines for :attr:`Answer.extra` (or a relayed answer)."""
    return b"".join(b"%s: %s\r\n" % (k.encode(), v.encode("latin-1")) for k, v in headers.items())


def preflight(headers: Mapping[str, str]) -> Answer:
    """A CORS preflight's answer, as a Lambda Function URL gives it: 200 without a body, with
    the policy's headers; without any when the request is not allowed, so the browser
    refuses the call (:meth:`kfn.api.web.CorsPolicy.preflight`)."""
    return Answer(200, b"", b"", header_lines(headers))


def url_too_long(limit: int) -> Answer:
    return error(414, "InvalidRequestContentException", f"the URL is longer than {limit} bytes")


def head_too_large(limit: int) -> Answer:
    return error(
        431,
        "InvalidRequestContentException",
        f"the request line and headers are larger than {limit} bytes",
    )


def queue_full(limit: int) -> Answer:
    """The function's queue in this activator holds ``limit`` requests already: 429, as Lambda
    answers a call beyond the function's concurrency ("Rate Exceeded."), with what to change."""
    return error(
        429,
        "TooManyRequestsException",
        f"Rate Exceeded: {limit} requests are already waiting for a pod of this function. "
        "Retry after Retry-After, or raise the Function's scale.maxReplicas or concurrency",
        RETRY_AFTER,
    )


def no_capacity(queue_timeout_ms: int) -> Answer:
    """No pod took the request within the function's queue timeout: 429, never a timeout, since
    the task never ran."""
    return error(
        429,
        "TooManyRequestsException",
        f"Rate Exceeded: no pod of this function was free within its queueTimeout "
        f"({queue_timeout_ms / 1000:.2f} s); all the pods scale.maxReplicas allows are busy or "
        "still starting. Retry after Retry-After, or raise the Function's scale.maxReplicas, "
        "concurrency or queueTimeout",
        RETRY_AFTER,
    )


def timed_out(timeout_ms: int) -> Answer:
    """The function's timeout passed while a pod served the request, as Lambda words it."""
    return error(504, "TimeoutError", f"Task timed out after {timeout_ms / 1000:.2f} seconds")


def runtime_exited(request_id: bytes, ended: exits.Exit | None = None) -> Answer:
    """The function's connection ended before its answer did: its process died mid-request.

    As Lambda, a function error, marked so that retries count it and a stream bisects its
    batch rather than holding it as throttling: ``Runtime.OutOfMemory`` when the kubelet
    reported the container killed for its memory, else ``Runtime.ExitError`` with the exit
    it reported (``signal: killed``, ``exit status 1``), or without one when none came
    (:mod:`~kfn.activator.exits`)."""
    rid = request_id.decode(errors="replace")
    if ended is None:
        return error(
            502,
            "Runtime.ExitError",
            f"RequestId: {rid} Error: Runtime exited before it answered "
            "(its process ended or its connection was cut)",
            FUNCTION_ERROR,
        )
    kind = "Runtime.OutOfMemory" if ended.out_of_memory else "Runtime.ExitError"
    return error(
        502,
        kind,
        f"RequestId: {rid} Error: Runtime exited with error: {ended.describe()}",
        FUNCTION_ERROR,
    )


def bad_request(message: str) -> Answer:
    """A request the proxy could not parse."""
    return error(400, "InvalidRequestContentException", message)
