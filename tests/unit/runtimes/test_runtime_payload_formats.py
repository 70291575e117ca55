"""Payload formats 1.0 (API Gateway REST proxy) and alb (load balancer target), and stripPrefix.

The event shapes and result rules are checked on the pure mapping (the Python runtime's; the Node
runtime is held to it by test_runtime_event_mapping's parity test), then end to end on both
runtimes, which choose the format and prefix by the activator's headers.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kfn_runtime import events

from .conftest import Starter

NOW_MS = 1584039838000
PNG = bytes([0x89, 0x50, 0x4E, 0x47, 0x00, 0xFF])


def event(
    fmt: str,
    target: str,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    prefix: str = "",
) -> dict[str, Any]:
    req = events.HttpRequest(method, target, "HTTP/1.1", headers or [], body, "10.1.2.3")
    return events.to_event(
        req,
        request_id="rid-1",
        now_ms=NOW_MS,
        api_id="fn",
        payload_format=fmt,
        path_prefix=prefix,
        target_group_arn="arn:tg",
    )


REPEATED = [
    ("Host", "api.example.test"),
    ("X-Tag", "a"),
    ("x-tag", "b"),
    ("Cookie", "s=1; t=2"),
    ("User-Agent", "ua/1"),
    ("Kfn-Request-Id", "rid-1"),
]


# ---- 1.0 -----------------------------------------------------------------------------------


def test_a_v1_get_has_last_values_and_multi_value_lists_of_headers_and_query() -> None:
    e = event("1.0", "/orders?tag=a&tag=b%20c&x=1", headers=REPEATED)
    assert (e["resource"], e["path"], e["httpMethod"]) == ("/orders", "/orders", "GET")
    assert e["headers"] == {
        "Host": "api.example.test",
        "X-Tag": "b",
        "Cookie": "s=1; t=2",
        "User-Agent": "ua/1",
    }
    assert e["multiValueHeaders"]["X-Tag"] == ["a", "b"]
    assert e["multiValueHeaders"]["Cookie"] == ["s=1; t=2"]
    assert e["queryStringParameters"] == {"tag": "b c", "x": "1"}
    assert e["multiValueQueryStringParameters"] == {"tag": ["a", "b c"], "x": ["1"]}
    assert e["pathParameters"] is None
    assert e["stageVariables"] is None
    assert e["body"] is None
    assert e["isBase64Encoded"] is False
    assert "cookies" not in e


def test_a_v1_request_without_query_has_null_parameters() -> None:
    e = event("1.0", "/")
    assert e["queryStringParameters"] is None
    assert e["multiValueQueryStringParameters"] is None


def test_a_v1_request_context_names_the_client_as_the_v2_event_does() -> None:
    headers = [*REPEATED, ("X-Forwarded-For", "203.0.113.9")]
    ctx = event("1.0", "/p", "PUT", headers)["requestContext"]
    v2 = event("2.0", "/p", "PUT", headers)["requestContext"]
    assert ctx["identity"]["sourceIp"] == v2["http"]["sourceIp"] == "203.0.113.9"
    assert ctx["identity"]["userAgent"] == "ua/1"
    assert ctx["identity"]["user"] is None
    assert ctx["httpMethod"] == "PUT"
    assert ctx["path"] == ctx["resourcePath"] == "/p"
    assert ctx["requestId"] == "rid-1"
    assert ctx["requestTimeEpoch"] == NOW_MS
    assert ctx["requestTime"] == "12/Mar/2020:19:03:58 +0000"
    assert ctx["domainName"] == "api.example.test"
    assert ctx["protocol"] == "HTTP/1.1"
    assert ctx["stage"] == "$default"


def test_a_v1_post_with_a_binary_body_is_base64() -> None:
    e = event("1.0", "/up", "POST", [("Content-Type", "image/png")], PNG)
    assert e["isBase64Encoded"] is True
    assert base64.b64decode(e["body"]) == PNG


def test_a_v1_result_merges_multi_value_headers_over_single_ones() -> None:
    response = events.from_result(
        {
            "statusCode": 201,
            "headers": {"X-A": "1", "set-cookie": "lost=1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": "made",
            "cookies": ["ignored=1"],
        },
        "1.0",
    )
    assert response.status == 201
    assert response.headers == [
        ("X-A", "1"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Type", "application/json"),
    ]
    assert response.body == b"made"


@pytest.mark.parametrize("fmt", ["1.0", "alb"])
@pytest.mark.parametrize(
    "result",
    [{"hello": "world"}, ["a"], None, "text", {"statusCode": 200, "body": {"a": 1}}],
    ids=["bare-object", "list", "none", "string", "object-body"],
)
def test_a_result_not_shaped_as_a_proxy_response_is_malformed(fmt: str, result: object) -> None:
    with pytest.raises(events.InvalidResultError):
        events.from_result(result, fmt)


def test_a_base64_v1_result_is_decoded() -> None:
    encoded = base64.b64encode(PNG).decode()
    response = events.from_result(
        {"statusCode": 200, "body": encoded, "isBase64Encoded": True}, "1.0"
    )
    assert response.body == PNG


# ---- alb -----------------------------------------------------------------------------------


def test_an_alb_get_keeps_last_values_and_leaves_the_query_undecoded() -> None:
    e = event("alb", "/orders?tag=a&tag=b%20c&q=x+y&flag", headers=REPEATED)
    assert e["requestContext"] == {"elb": {"targetGroupArn": "arn:tg"}}
    assert (e["httpMethod"], e["path"]) == ("GET", "/orders")
    assert e["queryStringParameters"] == {"tag": "b%20c", "q": "x+y", "flag": ""}
    assert e["headers"] == {
        "host": "api.example.test",
        "x-tag": "b",
        "cookie": "s=1; t=2",
        "user-agent": "ua/1",
    }
    assert e["body"] == ""
    assert e["isBase64Encoded"] is False
    assert "multiValueHeaders" not in e


def test_an_alb_post_with_a_binary_body_is_base64() -> None:
    e = event("alb", "/up", "POST", [("Content-Type", "application/octet-stream")], PNG)
    assert e["isBase64Encoded"] is True
    assert base64.b64decode(e["body"]) == PNG


def test_an_alb_result_has_status_headers_and_body_and_no_multi_value_headers() -> None:
    response = events.from_result(
        {
            "statusCode": 404,
            "statusDescription": "404 Not Found",
            "headers": {"Content-Type": "text/plain"},
            "multiValueHeaders": {"Set-Cookie": ["a=1"]},
            "body": "gone",
        },
        "alb",
    )
    assert response.status == 404
    assert response.headers == [("Content-Type", "text/plain")]
    assert response.body == b"gone"


# ---- 2.0 unchanged, and the prefix ---------------------------------------------------------


def test_v2_still_splits_cookies_and_infers_a_200_for_a_bare_object() -> None:
    e = event("2.0", "/", headers=REPEATED)
    assert e["cookies"] == ["s=1", "t=2"]
    response = events.from_result({"hello": "world"}, "2.0")
    assert (response.status, json.loads(response.body)) == (200, {"hello": "world"})


def test_an_unknown_or_missing_format_header_means_v2() -> None:
    assert events.payload_format(None) == "2.0"
    assert events.payload_format("3.0") == "2.0"
    assert events.payload_format("alb") == "alb"


@pytest.mark.parametrize(
    ("path", "prefix", "seen"),
    [
        ("/api/orders/42", "/api", "/orders/42"),
        ("/api", "/api", "/"),
        ("/api/", "/api", "/"),
        ("/apix", "/api", "/apix"),
        ("/other", "/api", "/other"),
        ("/x", "", "/x"),
        ("/a/b/c", "/a/b/", "/c"),
    ],
)
def test_a_stripped_path_is_below_the_prefix_and_starts_with_a_slash(
    path: str, prefix: str, seen: str
) -> None:
    assert events.strip_prefix(path, prefix) == seen


@pytest.mark.parametrize(("fmt", "key"), [("2.0", "rawPath"), ("1.0", "path"), ("alb", "path")])
def test_every_format_shows_the_stripped_path_and_keeps_the_query(fmt: str, key: str) -> None:
    e = event(fmt, "/api/orders?x=1", prefix="/api")
    assert e[key] == "/orders"
    if fmt == "2.0":
        assert e["requestContext"]["http"]["path"] == "/orders"
        assert e["rawQueryString"] == "x=1"
    else:
        assert e["queryStringParameters"]["x"] == "1"
    if fmt == "1.0":
        assert e["requestContext"]["path"] == "/api/orders"


# ---- both runtimes, end to end -------------------------------------------------------------


def test_the_runtime_builds_a_v1_event_and_merges_its_result(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.rest")
    conn = rt.connection()
    conn.putrequest("POST", "/api/orders?tag=a&tag=b", skip_accept_encoding=True)
    conn.putheader("Kfn-Payload-Format", "1.0")
    conn.putheader("Kfn-Path-Prefix", "/api")
    conn.putheader("X-Multi", "one")
    conn.putheader("X-Multi", "two")
    conn.putheader("Cookie", "session=abc")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(len(PNG)))
    conn.endheaders(PNG)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 200
    assert r.headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert r.headers["X-Format"] == "single"
    e = json.loads(body)
    assert (e["path"], e["requestContext"]["path"]) == ("/orders", "/api/orders")
    assert e["multiValueHeaders"]["X-Multi"] == ["one", "two"]
    assert e["headers"]["Cookie"] == "session=abc"
    assert e["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert e["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert base64.b64decode(e["body"]) == PNG
    assert not any(name.lower().startswith("kfn-") for name in e["headers"])


def test_the_runtime_builds_an_alb_event(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.rest")
    r = rt.request("GET", "/lb/x?q=a%20b&q=c", headers={"Kfn-Payload-Format": "alb"})
    assert r.status == 200
    assert r.headers.get_all("Set-Cookie") is None
    e = r.json()
    assert e["path"] == "/lb/x"
    assert e["queryStringParameters"] == {"q": "c"}
    assert e["requestContext"]["elb"]["targetGroupArn"] == (
        "arn:aws:elasticloadbalancing:local:000000000000:targetgroup/tested/0000000000000000"
    )


@pytest.mark.parametrize(
    ("fmt", "message"), [("1.0", "Internal server error"), ("alb", "Bad Gateway")]
)
def test_a_bare_result_is_a_502_in_the_formats_that_infer_nothing(
    start_runtime: Starter, language: str, fmt: str, message: str
) -> None:
    rt = start_runtime(language, "app.plain")
    r = rt.request("GET", "/", headers={"Kfn-Payload-Format": fmt})
    assert r.status == 502
    assert r.json() == {"message": message}
    assert r.headers["Kfn-Function-Error"] == "Unhandled"


def test_a_v2_route_with_a_stripped_prefix_sees_the_rest_of_the_path(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.http")
    r = rt.request("GET", "/api/orders?x=1", headers={"Kfn-Path-Prefix": "/api"})
    e = json.loads(r.body)
    assert (e["rawPath"], e["requestContext"]["http"]["path"]) == ("/orders", "/orders")
    assert e["rawQueryString"] == "x=1"
    assert r.headers.get_all("Set-Cookie") == ["session=abc; Path=/", "theme=dark"]
