"""Requests on any other path become API Gateway v2 (function URL) events, and results HTTP."""

from __future__ import annotations

import base64
import json

from .conftest import Starter


def test_the_request_becomes_a_function_url_event(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.http")
    conn = rt.connection()
    conn.putrequest(
        "POST", "/orders/42?expand=items&tag=a&tag=b%20c&empty=", skip_accept_encoding=True
    )
    conn.putheader("Content-Type", "application/json")
    conn.putheader("X-Multi", "one")
    conn.putheader("X-Multi", "two")
    conn.putheader("Cookie", "session=abc; theme=dark")
    conn.putheader("User-Agent", "kfn-test/1.0")
    conn.putheader("Kfn-Request-Id", "http-1")
    body = b'{"qty": 2}'
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    event = json.loads(r.read())
    conn.close()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/orders/42"
    assert event["rawQueryString"] == "expand=items&tag=a&tag=b%20c&empty="
    assert event["queryStringParameters"] == {"expand": "items", "tag": "a,b c", "empty": ""}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["headers"]["x-multi"] == "one,two"
    assert event["headers"]["content-type"] == "application/json"
    assert "cookie" not in event["headers"]
    assert "kfn-request-id" not in event["headers"]
    http = event["requestContext"]["http"]
    assert http == {
        "method": "POST",
        "path": "/orders/42",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "kfn-test/1.0",
    }
    assert event["requestContext"]["requestId"] == "http-1"
    assert event["requestContext"]["domainName"] == "127.0.0.1"
    assert isinstance(event["requestContext"]["timeEpoch"], int)
    assert event["body"] == '{"qty": 2}'
    assert event["isBase64Encoded"] is False


def test_a_request_without_query_cookies_or_body_leaves_those_keys_out(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.http")
    event = rt.request("GET", "/").json()
    assert event["rawPath"] == "/"
    assert event["rawQueryString"] == ""
    assert "queryStringParameters" not in event
    assert "cookies" not in event
    assert "body" not in event
    assert event["requestContext"]["http"]["method"] == "GET"


def test_a_structured_result_sets_status_headers_cookies_and_body(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.http")
    r = rt.request("DELETE", "/things/1", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
    assert r.status == 201
    assert r.headers["X-Method"] == "DELETE"
    assert r.headers["X-Count"] == "3"
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers.get_all("Set-Cookie") == ["session=abc; Path=/", "theme=dark"]
    assert r.json()["requestContext"]["http"]["sourceIp"] == "203.0.113.9"


def test_a_binary_body_arrives_base64_and_a_base64_result_is_sent_decoded(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.binary")
    payload = bytes(range(256)) * 4
    r = rt.request("POST", "/bin", payload, {"Content-Type": "application/octet-stream"})
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.body == payload[::-1]


def test_an_unstructured_result_is_sent_as_json(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.plain")
    r = rt.request("GET", "/anything")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == ["plain", 1]


def test_a_handler_exception_on_an_http_event_answers_502_without_a_stack(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.fail")
    r = rt.request("GET", "/")
    assert r.status == 502
    assert r.json() == {"message": "Internal Server Error"}
    assert r.headers["Kfn-Function-Error"] == "Unhandled"
    assert "BoomError" in rt.wait_for_output("BoomError")


def test_a_head_request_gets_headers_and_no_body(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.plain")
    conn = rt.connection()
    try:
        head = rt.request("HEAD", "/", conn=conn)
        assert head.status == 200
        assert head.body == b""
        assert int(head.headers["Content-Length"]) > 0
        # the connection is still usable: no stray body bytes were sent
        assert rt.request("GET", "/", conn=conn).json() == ["plain", 1]
    finally:
        conn.close()


def test_the_aws_sam_hello_world_python_handler_runs_unmodified(start_runtime: Starter) -> None:
    rt = start_runtime("python", "hello_world/app.lambda_handler")
    r = rt.request("GET", "/hello")
    assert r.status == 200
    assert r.json() == {"message": "hello world"}
    apigw_event = {"httpMethod": "GET", "path": "/hello", "headers": {}, "body": None}
    invoked = rt.invoke(apigw_event).json()
    assert invoked["statusCode"] == 200
    assert json.loads(invoked["body"]) == {"message": "hello world"}


def test_the_python_handler_guide_example_reads_the_region(start_runtime: Starter) -> None:
    rt = start_runtime("python", "lambda_function.lambda_handler", AWS_REGION="eu-local-1")
    r = rt.request("GET", "/")
    assert r.json() == {"Region ": "eu-local-1"}


def test_the_aws_sam_hello_world_node_es_module_runs_unmodified(start_runtime: Starter) -> None:
    rt = start_runtime("nodejs", "hello-world/app.lambdaHandler")
    assert rt.wait_ready().status == 200
    r = rt.request("GET", "/hello")
    assert r.status == 200
    assert r.json() == {"message": "hello world"}


def test_the_function_url_tutorial_node_handler_multiplies(start_runtime: Starter) -> None:
    rt = start_runtime("nodejs", "index.handler")
    r = rt.request("POST", "/", b'{"num1": 10, "num2": 10}', {"Content-Type": "application/json"})
    assert r.status == 200
    assert r.body == b"The product of 10 and 10 is 100"


def test_a_form_body_is_text_and_an_unknown_type_is_base64(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.http")
    form = rt.request(
        "POST", "/", b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"}
    ).json()
    assert form["body"] == "a=1&b=2"
    assert form["isBase64Encoded"] is False
    raw = rt.request("POST", "/", b"a=1", {"Content-Type": "application/x-thing"}).json()
    assert raw["isBase64Encoded"] is True
    assert base64.b64decode(raw["body"]) == b"a=1"
