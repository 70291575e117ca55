"""The pure HTTP <-> API Gateway v2 mapping, and that both runtimes map alike in every format."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest
from kfn_runtime import events

from .conftest import REPO

# 2020-03-12T19:03:58Z, the moment in the function URL event example of the Lambda guide.
NOW_MS = 1584039838000


def request(
    target: str = "/",
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    peer: str = "10.1.2.3",
) -> events.HttpRequest:
    return events.HttpRequest(method, target, "HTTP/1.1", headers or [], body, peer)


def event_for(req: events.HttpRequest) -> dict[str, Any]:
    return events.to_event(req, request_id="rid-1", now_ms=NOW_MS, api_id="fn")


def test_repeated_query_parameters_are_comma_joined_and_decoded() -> None:
    params = events.query_parameters("a=1&b=x%20y&a=2&c=&d=p+q")
    assert params == {"a": "1,2", "b": "x y", "c": "", "d": "p q"}


def test_headers_are_lower_cased_joined_and_cookies_split_out() -> None:
    headers, cookies = events.fold_headers(
        [
            ("Accept", "a/b"),
            ("X-Tag", "1"),
            ("x-tag", "2"),
            ("Cookie", "a=1; b=2"),
            ("Cookie", "c=3"),
            ("Kfn-Timeout-Ms", "5"),
        ]
    )
    assert headers == {"accept": "a/b", "x-tag": "1,2"}
    assert cookies == ["a=1", "b=2", "c=3"]


def test_the_event_has_the_function_url_request_context() -> None:
    event = event_for(request("/p?q=1", "PUT", [("Host", "fn.example.test:8080")]))
    ctx = event["requestContext"]
    assert ctx["time"] == "12/Mar/2020:19:03:58 +0000"
    assert ctx["timeEpoch"] == NOW_MS
    assert ctx["domainName"] == "fn.example.test"
    assert ctx["domainPrefix"] == "fn"
    assert ctx["requestId"] == "rid-1"
    assert ctx["apiId"] == "fn"
    assert ctx["http"]["method"] == "PUT"
    assert ctx["http"]["sourceIp"] == "10.1.2.3"
    assert ctx["stage"] == ctx["routeKey"] == event["routeKey"] == "$default"


def test_an_absolute_form_target_keeps_only_path_and_query() -> None:
    event = event_for(request("http://fn.example.test/a/b?x=1"))
    assert (event["rawPath"], event["rawQueryString"]) == ("/a/b", "x=1")


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("text/plain; charset=utf-8", True),
        ("application/json", True),
        ("application/vnd.api+json", True),
        ("application/xml", True),
        ("application/x-www-form-urlencoded", True),
        ("application/octet-stream", False),
        ("image/png", False),
        ("", False),
    ],
)
def test_text_media_types_are_recognised(content_type: str, text: bool) -> None:
    assert events.is_text(content_type) is text


def test_a_text_body_that_is_not_utf8_is_sent_base64() -> None:
    body = b"\xff\xfe caf\xe9"
    event = event_for(request(method="POST", headers=[("Content-Type", "text/plain")], body=body))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_a_structured_result_maps_to_status_headers_cookies_and_body() -> None:
    response = events.from_result(
        {
            "statusCode": 404,
            "headers": {"X-A": "1", "X-N": 2, "X-B": True, "Content-Length": "999"},
            "cookies": ["a=1; Secure", "b=2"],
            "body": "missing",
        }
    )
    assert response.status == 404
    assert response.headers == [
        ("X-A", "1"),
        ("X-N", "2"),
        ("X-B", "true"),
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1; Secure"),
        ("Set-Cookie", "b=2"),
    ]
    assert response.body == b"missing"


def test_a_base64_result_body_is_decoded() -> None:
    data = bytes(range(10))
    response = events.from_result(
        {"statusCode": 200, "body": base64.b64encode(data).decode(), "isBase64Encoded": True}
    )
    assert response.body == data


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": 99},
        {"statusCode": "abc"},
        {"statusCode": True},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "cookies": "a=1"},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    ],
)
def test_a_malformed_structured_result_is_rejected(result: dict[str, Any]) -> None:
    with pytest.raises(events.InvalidResultError):
        events.from_result(result)


@pytest.mark.parametrize("result", [{"body": "no status"}, [1, 2], 7, None])
def test_anything_without_a_status_code_is_a_200_json_body(result: object) -> None:
    response = events.from_result(result)
    assert response.status == 200
    assert response.headers == [("Content-Type", "application/json")]
    assert json.loads(response.body) == result


def test_a_string_result_is_the_body_as_it_is() -> None:
    response = events.from_result("Hello, wörld")
    assert response.status == 200
    assert response.headers == [("Content-Type", "application/json")]
    assert response.body == "Hello, wörld".encode()


# ---- both runtimes map alike -------------------------------------------------------------------

_NODE_MAPPER = """
const events = require(process.argv[1]);
let input = '';
process.stdin.on('data', (c) => (input += c));
process.stdin.on('end', () => {
  const cases = JSON.parse(input);
  const out = {
    events: cases.requests.map((r) => events.toEvent(
      { ...r, rawHeaders: r.headers.flat(), body: Buffer.from(r.body, 'base64') },
      { requestId: 'rid-1', nowMs: cases.nowMs, apiId: 'fn', payloadFormat: r.format,
        pathPrefix: r.prefix, targetGroupArn: 'arn:tg' })),
    responses: cases.results.map(([res, format]) => {
      try {
        const r = events.fromResult(res, format);
        return { status: r.status, headers: r.headers, body: r.body.toString('base64') };
      } catch (e) {
        return { invalid: true };
      }
    }),
  };
  process.stdout.write(JSON.stringify(out));
});
"""

PARITY_REQUESTS = [
    request(),
    request(
        "/a%20b/c?x=1&x=2&y=%E2%9C%93&z",
        "POST",
        [("Content-Type", "application/json"), ("Host", "h.example.test")],
        b'{"k":1}',
    ),
    request(
        "/up",
        "PUT",
        [("content-type", "image/png"), ("X-Forwarded-For", "1.2.3.4, 5.6.7.8")],
        bytes(range(40)),
    ),
    request("/c", "GET", [("Cookie", "a=1;b=2"), ("X-R", "1"), ("X-R", "2"), ("User-Agent", "ua")]),
    request(
        "/a%20b?q=a+b&q=%2F&flag",
        "DELETE",
        [("X-Tag", "1"), ("x-tag", "2"), ("Kfn-Path-Prefix", "/a%20b"), ("Host", "[::1]:80")],
    ),
]
PARITY_RESULTS: list[object] = [
    {"statusCode": 302, "headers": {"Location": "/x", "X-N": 5}, "cookies": ["s=1"]},
    {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True},
    {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "hi"},
    {"statusCode": 700},
    {"no": "status"},
    ["list", 1],
    {
        "statusCode": 200,
        "headers": {"X-One": "h", "set-cookie": "dropped=1"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Two": ["p", "q"]},
        "body": "ok",
    },
    {"statusCode": 404, "statusDescription": "404 Not Found", "body": None},
    {"statusCode": 200, "body": {"not": "a string"}},
    {"statusCode": 200, "multiValueHeaders": {"X": "not a list"}},
    {"statusCode": 200, "statusDescription": 5},
]
FORMATS = ("2.0", "1.0", "alb")
#: Each request in each format, without and with a stripped prefix.
PARITY_MAPPINGS = [(fmt, prefix) for fmt in FORMATS for prefix in ("", "/a%20b")]


def mapped(req: events.HttpRequest, fmt: str, prefix: str) -> dict[str, Any]:
    return events.to_event(
        req,
        request_id="rid-1",
        now_ms=NOW_MS,
        api_id="fn",
        payload_format=fmt,
        path_prefix=prefix,
        target_group_arn="arn:tg",
    )


def test_the_node_runtime_maps_events_and_results_like_the_python_one() -> None:
    cases = {
        "nowMs": NOW_MS,
        "requests": [
            {
                "method": r.method,
                "target": r.target,
                "protocol": r.protocol,
                "headers": [list(h) for h in r.headers],
                "body": base64.b64encode(r.body).decode(),
                "peer": r.peer,
                "format": fmt,
                "prefix": prefix,
            }
            for fmt, prefix in PARITY_MAPPINGS
            for r in PARITY_REQUESTS
        ],
        "results": [[result, fmt] for fmt in FORMATS for result in PARITY_RESULTS],
    }
    node = subprocess.run(
        ["node", "-e", _NODE_MAPPER, str(REPO / "runtime-images/nodejs/kfn_runtime/events.js")],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    got = json.loads(node.stdout)
    assert got["events"] == [
        mapped(r, fmt, prefix) for fmt, prefix in PARITY_MAPPINGS for r in PARITY_REQUESTS
    ]
    expected = []
    for fmt, result in [(fmt, result) for fmt in FORMATS for result in PARITY_RESULTS]:
        try:
            resp = events.from_result(result, fmt)
        except events.InvalidResultError:
            expected.append({"invalid": True})
            continue
        expected.append(
            {
                "status": resp.status,
                "headers": [list(h) for h in resp.headers],
                "body": base64.b64encode(resp.body).decode(),
            }
        )
    assert got["responses"] == expected
