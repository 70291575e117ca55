"""Pure mapping between raw HTTP and the events Lambda receives from HTTP services.

A request that is not for the runtime's own ``/_kfn/`` paths becomes an event in the payload format
its route asks for (``Kfn-Payload-Format``): API Gateway HTTP API payload v2.0 as a function URL
sends it (the default), API Gateway REST API proxy integration's payload 1.0, or an Application
Load Balancer target's (``alb``), so handlers written for any of them run unchanged. The handler's
result is turned back into HTTP with the rules that service applies to it. A route may also strip
its prefix from the path the handler sees (``Kfn-Path-Prefix``).

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
#: The handler's time, measured by the runtime: a handler cannot send its own.
HANDLER_DURATION = "kfn-handler-duration"
_NOT_COPIED = HOP_BY_HOP | {NOT_STARTED, HANDLER_DURATION}
_TEXT_SUBTYPE_SUFFIXES = ("json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv")

#: The payload formats (``Kfn-Payload-Format``); anything else, or none, is ``V2``.
V2 = "2.0"
V1 = "1.0"
ALB = "alb"
PAYLOAD_FORMATS = frozenset({V2, V1, ALB})
#: What each format's service answers when the function failed or its result was malformed.
FAILURE_MESSAGES = {V2: "Internal Server Error", V1: "Internal server error", ALB: "Bad Gateway"}


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


def payload_format(header: str | None) -> str:
    """The format a ``Kfn-Payload-Format`` header names; 2.0 when absent or unknown."""
    return header if header in PAYLOAD_FORMATS else V2


def strip_prefix(path: str, prefix: str) -> str:
    """``path`` below ``prefix`` (matched on whole segments), always starting with ``/``.

    A path outside the prefix (the activator routed it, so only a direct caller sends one) is
    left as it is.
    """
    prefix = prefix.rstrip("/")
    if not prefix or not path.startswith(prefix):
        return path
    rest = path[len(prefix) :]
    if not rest:
        return "/"
    return rest if rest.startswith("/") else path


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
    return {name: ",".join(values) for name, values in _multi_query(raw_query).items()}


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


def _domain(host: str) -> str:
    return host.rsplit(":", 1)[0] if not host.endswith("]") else host


def _source_ip(forwarded_for: str, peer: str) -> str:
    """The first ``X-Forwarded-For`` entry when a proxy in front set one, else the peer."""
    return forwarded_for.split(",", 1)[0].strip() or peer


def _body(raw: bytes, content_type: str) -> tuple[str | None, bool]:
    """The body as the event carries it: text as a string, anything else base64; None if empty."""
    if not raw:
        return None, False
    if is_text(content_type):
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(raw).decode("ascii"), True


def to_event(
    request: HttpRequest,
    *,
    request_id: str,
    now_ms: int,
    api_id: str,
    payload_format: str = V2,
    path_prefix: str = "",
    target_group_arn: str = "",
) -> dict[str, Any]:
    """The event for ``request`` in ``payload_format``, its path below ``path_prefix``.

    ``api_id`` names the API (2.0, 1.0); ``target_group_arn`` the load balancer's target group
    (alb).
    """
    if payload_format == V1:
        return _v1_event(
            request, request_id=request_id, now_ms=now_ms, api_id=api_id, path_prefix=path_prefix
        )
    if payload_format == ALB:
        return _alb_event(request, path_prefix=path_prefix, target_group_arn=target_group_arn)
    return _v2_event(
        request, request_id=request_id, now_ms=now_ms, api_id=api_id, path_prefix=path_prefix
    )


def _v2_event(
    request: HttpRequest, *, request_id: str, now_ms: int, api_id: str, path_prefix: str
) -> dict[str, Any]:
    """The function-URL event.

    Keys that a function URL leaves out when empty (``cookies``, ``queryStringParameters``,
    ``body``) are left out here too.
    """
    raw_path, raw_query = split_target(request.target)
    raw_path = strip_prefix(raw_path, path_prefix)
    headers, cookies = fold_headers(request.headers)
    domain = _domain(headers.get("host", "localhost"))
    source_ip = _source_ip(headers.get("x-forwarded-for", ""), request.peer)
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
    body, encoded = _body(request.body, headers.get("content-type", ""))
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


def _multi_headers(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Every header's values in order, under its name as first sent; control headers left out."""
    spelled: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        if key.startswith(CONTROL_HEADER_PREFIX):
            continue
        spelled.setdefault(key, name)
        values.setdefault(spelled[key], []).append(value)
    return values


def _multi_query(raw_query: str) -> dict[str, list[str]]:
    """Decoded parameters, every value of a repeated name in order (1.0's multiValue lists)."""
    params: dict[str, list[str]] = {}
    for name, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    return params


def _v1_event(
    request: HttpRequest, *, request_id: str, now_ms: int, api_id: str, path_prefix: str
) -> dict[str, Any]:
    """The REST API proxy integration's event (payload 1.0).

    Headers keep the names as the client sent them; ``headers`` and ``queryStringParameters``
    hold each name's last value, the ``multiValue`` twins all of them, and are null when there
    are none. Every path is a resource of its own: ``resource`` is the path, ``pathParameters``
    null. ``requestContext.path`` is the full path, also when the route strips its prefix.
    """
    full_path, raw_query = split_target(request.target)
    path = strip_prefix(full_path, path_prefix)
    multi_headers = _multi_headers(request.headers)
    headers = {name: values[-1] for name, values in multi_headers.items()}
    lower = {name.lower(): value for name, value in headers.items()}
    multi_query = _multi_query(raw_query)
    domain = _domain(lower.get("host", "localhost"))
    body, encoded = _body(request.body, lower.get("content-type", ""))
    identity: dict[str, str | None] = dict.fromkeys(_V1_IDENTITY_NULLS)
    identity["sourceIp"] = _source_ip(lower.get("x-forwarded-for", ""), request.peer)
    identity["userAgent"] = lower.get("user-agent")
    return {
        "resource": path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "extendedRequestId": request_id,
            "httpMethod": request.method,
            "identity": identity,
            "path": full_path,
            "protocol": request.protocol,
            "requestId": request_id,
            "requestTime": _clf_time(now_ms),
            "requestTimeEpoch": now_ms,
            "resourceId": "$default",
            "resourcePath": path,
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


_V1_IDENTITY_NULLS = (
    "accessKey",
    "accountId",
    "caller",
    "cognitoAuthenticationProvider",
    "cognitoAuthenticationType",
    "cognitoIdentityId",
    "cognitoIdentityPoolId",
    "principalOrgId",
    "sourceIp",
    "user",
    "userAgent",
    "userArn",
)


def _alb_event(request: HttpRequest, *, path_prefix: str, target_group_arn: str) -> dict[str, Any]:
    """An Application Load Balancer target's event, multi-value headers off.

    As the load balancer does: header names lower-cased, a repeated header or query parameter
    keeps its last value, ``Cookie`` stays a header, and query parameters are passed as they
    were sent, not percent-decoded (the handler decodes them). The body is ``""`` when empty.
    """
    path, raw_query = split_target(request.target)
    path = strip_prefix(path, path_prefix)
    headers: dict[str, str] = {}
    for name, value in request.headers:
        key = name.lower()
        if not key.startswith(CONTROL_HEADER_PREFIX):
            headers[key] = value
    query: dict[str, str] = {}
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            query[name] = value
    body, encoded = _body(request.body, headers.get("content-type", ""))
    return {
        "requestContext": {"elb": {"targetGroupArn": target_group_arn}},
        "httpMethod": request.method,
        "path": path,
        "queryStringParameters": query,
        "headers": headers,
        "body": body or "",
        "isBase64Encoded": encoded,
    }


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


def from_result(result: object, payload_format: str = V2) -> HttpResponse:
    """The HTTP response for a handler's result, by the rules of ``payload_format``'s service.

    2.0 (API Gateway's payload v2): a dict with ``statusCode`` is a structured response
    (``headers``, ``cookies``, ``body``, ``isBase64Encoded``); anything else is a 200 with
    content type JSON whose body is the result: a string as it is (the guides' example answers
    ``"Hello from Lambda!"`` with that text), any other value as its JSON. 1.0 and alb accept
    only a structured response, whose ``body`` is a string: 1.0 merges ``multiValueHeaders``
    into ``headers`` (a name in both takes the multi-value list), alb reads no
    ``multiValueHeaders`` (multi-value headers are off) and takes ``statusDescription`` (a
    string) without sending it: the status line's reason phrase stays the standard one.
    Content type defaults to JSON in all three.
    Raises :class:`InvalidResultError` (a 502 for the caller) for a malformed response and
    :class:`TypeError` / :class:`ValueError` if an unstructured 2.0 result is not JSON.
    """
    structured = isinstance(result, dict) and "statusCode" in result
    if payload_format not in (V1, ALB):
        if isinstance(result, str):
            return HttpResponse(200, [("Content-Type", "application/json")], result.encode())
        if not structured:
            return json_response(result)
    elif not structured:
        raise InvalidResultError(f"a {payload_format} result is an object with a statusCode")
    assert isinstance(result, dict)
    if payload_format in (V1, ALB) and not isinstance(result.get("body"), str | None):
        raise InvalidResultError("body must be a string")
    if payload_format == ALB and not isinstance(result.get("statusDescription"), str | None):
        raise InvalidResultError("statusDescription must be a string")
    return HttpResponse(_status(result), _headers(result, payload_format), _body_bytes(result))


def stream_head(prelude: dict[Any, Any], default_content_type: str) -> HttpResponse:
    """Status and headers of a streamed answer from its prelude (payload v2's rules for
    ``statusCode``, ``headers`` and ``cookies``, whatever the payload format); the body
    follows as the stream. Raises :class:`InvalidResultError` for a malformed prelude."""
    status = _status(prelude) if "statusCode" in prelude else 200
    given = prelude.get("headers") or {}
    if not isinstance(given, dict):
        raise InvalidResultError("headers must be an object")
    if not any(str(name).lower() == "content-type" for name in given):
        given = {**given, "Content-Type": default_content_type}
    return HttpResponse(status, _headers({**prelude, "headers": given}, V2), b"")


def _status(result: dict[Any, Any]) -> int:
    status = result["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidResultError(f"statusCode must be an integer 100-599, got {status!r}")
    return status


def _headers(result: dict[Any, Any], payload_format: str) -> list[tuple[str, str]]:
    raw_headers = result.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise InvalidResultError("headers must be an object")
    pairs: list[tuple[str, object]] = list(raw_headers.items())
    if payload_format == V1:
        pairs = _merged(pairs, result.get("multiValueHeaders"))
    headers = [
        (str(name), _header_value(value))
        for name, value in pairs
        if str(name).lower() not in _NOT_COPIED and value is not None
    ]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    if payload_format == V2:
        raw_cookies = result.get("cookies") or []
        if not isinstance(raw_cookies, list):
            raise InvalidResultError("cookies must be a list of strings")
        headers.extend(("Set-Cookie", str(cookie)) for cookie in raw_cookies)
    return headers


def _body_bytes(result: dict[Any, Any]) -> bytes:
    raw_body = result.get("body")
    if raw_body is None:
        return b""
    if not isinstance(raw_body, str):
        return json.dumps(raw_body, separators=(",", ":")).encode("utf-8")
    if not result.get("isBase64Encoded"):
        return raw_body.encode("utf-8")
    try:
        return base64.b64decode(raw_body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidResultError(f"body is not valid base64: {exc}") from None


def _merged(pairs: list[tuple[str, object]], multi: object) -> list[tuple[str, object]]:
    """``headers`` with ``multiValueHeaders`` merged in, as API Gateway REST does: a name in
    both (in any case) is sent with the multi-value list only."""
    if multi is None:
        return pairs
    if not isinstance(multi, dict):
        raise InvalidResultError("multiValueHeaders must be an object")
    listed = {str(name).lower() for name in multi}
    merged = [(name, value) for name, value in pairs if str(name).lower() not in listed]
    for name, values in multi.items():
        if not isinstance(values, list):
            raise InvalidResultError("multiValueHeaders values must be lists")
        merged.extend((name, value) for value in values)
    return merged
