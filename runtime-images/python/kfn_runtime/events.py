"""Pure mapping between raw HTTP and API Gateway HTTP API payload v2.0, as Lambda function URLs do.

A request that is not for the runtime's own ``/_kfn/`` paths becomes an event shaped like the one a
function URL sends, so handlers written for function URLs or HTTP APIs run unchanged. The handler's
result is turned back into HTTP with the rules API Gateway applies to payload v2 responses.

Nothing here does I/O or reads the clock: the request id, time and peer are passed in.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import time
import urllib.parse
from typing import Any

#: Headers that carry the runtime's own control data; they are not shown to the handler.
CONTROL_HEADER_PREFIX = "kfn-"
#: Headers the runtime computes itself and never copies from a handler's result.
HOP_BY_HOP = frozenset(
    {"connection", "content-length", "keep-alive", "transfer-encoding", "upgrade", "trailer"}
)
#: The runtime's mark on a request it refused unstarted: a handler cannot send it.
NOT_STARTED = "kfn-not-started"
_NOT_COPIED = HOP_BY_HOP | {NOT_STARTED}
_TEXT_SUBTYPE_SUFFIXES = ("json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv")


@dataclasses.dataclass(frozen=True)
class HttpRequest:
    """A raw HTTP request as read from the connection."""

    method: str
    target: str
    protocol: str
    headers: list[tuple[str, str]]
    body: bytes
    peer: str


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    """The HTTP response to send for a handler's result."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InvalidResultError(ValueError):
    """The handler returned a structured response that cannot be turned into HTTP."""


def is_text(content_type: str) -> bool:
    """Whether a body of this media type is passed to the handler as text rather than base64."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        return False
    kind, _, subtype = media.partition("/")
    return kind == "text" or subtype.endswith(_TEXT_SUBTYPE_SUFFIXES)


def split_target(target: str) -> tuple[str, str]:
    """``/a/b?x=1`` → ``("/a/b", "x=1")``; an absolute-form target keeps only its path."""
    if "://" in target:
        parts = urllib.parse.urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path or "/", query


def query_parameters(raw_query: str) -> dict[str, str]:
    """Decoded parameters, repeated names comma-joined in order, as API Gateway v2 does."""
    params: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def fold_headers(headers: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Lower-cased headers with repeats comma-joined, and the cookies split out of ``Cookie``."""
    folded: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        if key.startswith(CONTROL_HEADER_PREFIX):
            continue
        folded[key] = f"{folded[key]},{value}" if key in folded else value
    return folded, cookies


def _clf_time(epoch_ms: int) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000))


def to_event(request: HttpRequest, *, request_id: str, now_ms: int, api_id: str) -> dict[str, Any]:
    """The function-URL event for ``request``.

    Keys that a function URL leaves out when empty (``cookies``, ``queryStringParameters``,
    ``body``) are left out here too. The source IP is the first ``X-Forwarded-For`` entry when a
    proxy in front set one, else the peer address.
    """
    raw_path, raw_query = split_target(request.target)
    headers, cookies = fold_headers(request.headers)
    host = headers.get("host", "localhost")
    domain = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    forwarded = headers.get("x-forwarded-for", "")
    source_ip = forwarded.split(",", 1)[0].strip() or request.peer
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if raw_query:
        event["queryStringParameters"] = query_parameters(raw_query)
    event["requestContext"] = {
        "accountId": "anonymous",
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": request.protocol,
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": _clf_time(now_ms),
        "timeEpoch": now_ms,
    }
    encoded = False
    if request.body:
        body: str | None = None
        if is_text(headers.get("content-type", "")):
            try:
                body = request.body.decode("utf-8")
            except UnicodeDecodeError:
                body = None
        if body is None:
            body = base64.b64encode(request.body).decode("ascii")
            encoded = True
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


def _header_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def json_response(value: object, status: int = 200) -> HttpResponse:
    """``value`` as a compact JSON body."""
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return HttpResponse(status, [("Content-Type", "application/json")], body)


def from_result(result: object) -> HttpResponse:
    """The HTTP response for a handler's result, by API Gateway's payload v2 rules.

    A dict with ``statusCode`` is a structured response (``headers``, ``cookies``, ``body``,
    ``isBase64Encoded``; content type defaults to JSON). Anything else is sent as a 200 JSON body.
    Raises :class:`InvalidResultError` (a 502 for the caller) for a malformed structured response
    and :class:`TypeError` / :class:`ValueError` if an unstructured result is not JSON.
    """
    if not (isinstance(result, dict) and "statusCode" in result):
        return json_response(result)
    status = result["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidResultError(f"statusCode must be an integer 100-599, got {status!r}")
    raw_headers = result.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise InvalidResultError("headers must be an object")
    headers = [
        (str(name), _header_value(value))
        for name, value in raw_headers.items()
        if str(name).lower() not in _NOT_COPIED and value is not None
    ]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    raw_cookies = result.get("cookies") or []
    if not isinstance(raw_cookies, list):
        raise InvalidResultError("cookies must be a list of strings")
    headers.extend(("Set-Cookie", str(cookie)) for cookie in raw_cookies)
    raw_body = result.get("body")
    if raw_body is None:
        body = b""
    elif isinstance(raw_body, str):
        if result.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw_body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidResultError(f"body is not valid base64: {exc}") from None
        else:
            body = raw_body.encode("utf-8")
    else:
        body = json.dumps(raw_body, separators=(",", ":")).encode("utf-8")
    return HttpResponse(status, headers, body)
