"""Lambda's documented payload examples, end to end through both runtimes.

Each event in ``lambda_examples/`` is the example a guide publishes for its payload format (see
its README). The test rebuilds the HTTP request that produces it, sends it through a real
runtime with the format's ``Kfn-Payload-Format``, and compares the event the handler received
with the example. The documented results in ``responses.json`` are returned by a handler and the
HTTP responses compared with what the guides say each format makes of them.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from .conftest import Starter

EXAMPLES = Path(__file__).parent / "lambda_examples"

#: Keys whose values name where the request was served or when, not what was asked: kfn fills
#: them from its own cluster (account "anonymous", the function as API id, the request's Host,
#: its own request id and clock), so only their presence and type are compared.
SERVED_BY = frozenset(
    {
        "requestContext.accountId",
        "requestContext.apiId",
        "requestContext.domainName",
        "requestContext.domainPrefix",
        "requestContext.requestId",
        "requestContext.extendedRequestId",
        "requestContext.resourceId",
        "requestContext.time",
        "requestContext.timeEpoch",
        "requestContext.requestTime",
        "requestContext.requestTimeEpoch",
        "requestContext.elb.targetGroupArn",
    }
)

#: Parts of the examples kfn has no counterpart for: IAM or JWT authorizers (a kfn route's
#: auth is a Kubernetes token, checked before the handler runs) and mutual-TLS client
#: certificates (TLS ends at the Gateway). The guides mark each optional.
ABSENT_IN_KFN = frozenset(
    {
        "requestContext.authorizer",
        "requestContext.authentication",
        "requestContext.identity.clientCert",
    }
)

#: Header maps: the example's headers must all be there with their values; a real request
#: also carries transport headers (Host, Content-Length, X-Forwarded-For) the example leaves out.
HEADER_MAPS = frozenset({"headers", "multiValueHeaders"})


def load(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Where the event a handler received differs from the documented example."""
    if path in SERVED_BY:
        return [] if type(got) is type(want) else [f"{path}: {got!r} is not like {want!r}"]
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: {got!r} is not an object"]
        found: list[str] = []
        for key, value in want.items():
            where = f"{path}.{key}" if path else key
            if where in ABSENT_IN_KFN:
                continue
            if key not in got:
                found.append(f"{where}: missing")
            else:
                found.extend(differences(got[key], value, where))
        if path not in HEADER_MAPS:
            extra = set(got) - set(want)
            found.extend(f"{path}.{key}: not in the example" for key in sorted(extra))
        return found
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


def send(
    rt: Any, fmt: str, request: tuple[str, str, list[tuple[str, str]], bytes]
) -> tuple[int, http.client.HTTPMessage, bytes]:
    method, target, headers, body = request
    conn = rt.connection()
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Kfn-Payload-Format", fmt)
        for name, value in headers:
            conn.putheader(name, value)
        if body or method in ("POST", "PUT"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def v2_request(e: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], bytes]:
    http_ = e["requestContext"]["http"]
    headers = [("Host", e["requestContext"]["domainName"])]
    headers += [(name, value) for name, value in e["headers"].items()]
    headers.append(("Cookie", "; ".join(e["cookies"])))
    headers.append(("X-Forwarded-For", http_["sourceIp"]))
    target = e["rawPath"] + ("?" + e["rawQueryString"] if e["rawQueryString"] else "")
    return http_["method"], target, headers, (e["body"] or "").encode()


def v1_request(e: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], bytes]:
    headers = [("Host", e["requestContext"]["domainName"])]
    for name, values in e["multiValueHeaders"].items():
        headers += [(name, value) for value in values]
    headers.append(("X-Forwarded-For", e["requestContext"]["identity"]["sourceIp"]))
    query = urllib.parse.urlencode(
        [(k, v) for k, vs in e["multiValueQueryStringParameters"].items() for v in vs]
    )
    return e["httpMethod"], f"{e['path']}?{query}", headers, (e["body"] or "").encode()


def alb_request(e: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], bytes]:
    # An ALB target without multi-value headers sees the query as sent, undecoded.
    query = "&".join(f"{k}={v}" for k, v in e["queryStringParameters"].items())
    headers = list(e["headers"].items())
    return e["httpMethod"], f"{e['path']}?{query}", headers, e["body"].encode()


EVENTS = {
    "2.0": ("v2-event.json", v2_request),
    "1.0": ("v1-event.json", v1_request),
    "alb": ("alb-event.json", alb_request),
}


def test_the_example_comparison_finds_a_changed_missing_or_extra_key() -> None:
    want = {"a": 1, "headers": {"x": "1"}, "requestContext": {"apiId": "id", "b": [1]}}
    same = {"a": 1, "headers": {"x": "1", "h": "2"}, "requestContext": {"apiId": "k", "b": [1]}}
    assert differences(same, want) == []
    changed = {**same, "a": 2, "extra": None}
    changed["requestContext"] = {"apiId": 7}
    assert differences(changed, want) == [
        "a: 2 != 1",
        "requestContext.apiId: 7 is not like 'id'",
        "requestContext.b: missing",
        ".extra: not in the example",
    ]


@pytest.mark.parametrize("fmt", list(EVENTS))
def test_a_documented_request_gives_the_documented_event(
    start_runtime: Starter, language: str, fmt: str
) -> None:
    name, rebuild = EVENTS[fmt]
    example = load(name)
    rt = start_runtime(language, "documented.echo_event")
    status, _, answer = send(rt, fmt, rebuild(example))
    assert status == 200, answer
    assert differences(json.loads(answer), example) == []


def case_ids(case: dict[str, Any]) -> str:
    return str(case["name"])


@pytest.mark.parametrize("case", load("responses.json"), ids=case_ids)
def test_a_documented_result_gives_the_documented_response(
    start_runtime: Starter, language: str, case: dict[str, Any]
) -> None:
    rt = start_runtime(language, "documented.respond")
    headers = [("Host", "orders.example.test"), ("Content-Type", "application/json")]
    result = json.dumps(case["result"]).encode()
    status, got, body = send(rt, case["format"], ("POST", "/orders", headers, result))
    assert status == case["status"], body
    for name, value in case.get("headers", {}).items():
        assert got[name] == value, (name, got.items())
    for name, values in case.get("multi", {}).items():
        assert got.get_all(name) == values
    assert got.get_all("Set-Cookie") == case.get("set-cookie")
    if "body" in case:
        assert body == case["body"].encode()
    if "body-base64" in case:
        assert body == base64.b64decode(case["body-base64"])
    if "json" in case:
        assert json.loads(body) == case["json"]
