"""Functions reached from outside the cluster: through the local Gateway (Envoy Gateway), over
HTTPS verified against the cluster's CA, from zero; CORS preflights answered without a pod; the
client's address as the function's sourceIp; a listener that refuses a namespace's routes.

Requests go from this process to the Gateway's node ports on the node address
(:mod:`kfncluster.gateway`), with the host name sent as TLS SNI and ``Host``: the way
``curl --resolve`` does it.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage, gateway
from tests.cluster.edge import ensure_gateway, request, served
from tests.cluster.invoking import bearer, deploy
from tests.cluster.kubeutil import (
    apply,
    function_pods,
    kubectl,
    kubectl_json,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)

pytestmark = pytest.mark.cluster

HANDLER = """\
import json


def handler(event, context):
    http = event["requestContext"]["http"]
    body = {
        "sourceIp": http["sourceIp"],
        "method": http["method"],
        "rawPath": event["rawPath"],
        "host": event["headers"].get("host"),
        "forwardedProto": event["headers"].get("x-forwarded-proto"),
    }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "access-control-allow-origin": "nope"},
        "body": json.dumps(body),
    }
"""

ORIGIN = "https://app.example.com"
CORS = {
    "allowOrigins": [ORIGIN],
    "allowMethods": ["GET", "POST"],
    "allowHeaders": ["content-type", "x-api-key"],
    "exposeHeaders": ["x-request-id"],
    "maxAge": 600,
}


@pytest.fixture(scope="module")
def edge(cluster: pathlib.Path) -> str:
    """The local Gateway (installed if missing), as ``make up`` brings it."""
    return ensure_gateway()


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/exposure", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def namespace(kfn: str, edge: str) -> Iterator[str]:
    with scratch_namespace("exposure") as name:
        yield name


def condition(kind: str, namespace: str, name: str, type_: str) -> dict[str, Any]:
    body = kubectl_json("-n", namespace, "get", kind, name)
    found = [c for c in body.get("status", {}).get("conditions", []) if c["type"] == type_]
    return found[0] if found else {}


def wait_condition(kind: str, namespace: str, name: str, type_: str, status: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = condition(kind, namespace, name, type_)
        return found if found.get("status") == status else None

    return wait_for(f"{kind} {name} {type_}={status}", check, timeout=120, every=0.5)


def url_host(name: str, namespace: str) -> str:
    return f"{name}-{namespace}.{gateway.DOMAIN}"


# --- Function URLs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def function_url(namespace: str, image: str) -> str:
    """A Function with a Function URL and CORS, exposed and at zero; its host."""
    deploy(namespace, "site", image, url={"cors": CORS}, scale={"idleTimeout": "5s"})
    wait_condition("function", namespace, "site", "Exposed", "True")
    return url_host("site", namespace)


def test_a_function_url_answers_over_https_from_zero_with_the_clients_address(
    namespace: str, function_url: str
) -> None:
    fn = kubectl_json("-n", namespace, "get", "function", "site")
    assert fn["status"]["functionUrl"] == gateway.url(function_url)
    wait_at_zero(namespace, "site", timeout=90)
    started = time.monotonic()
    status, _, body = served(function_url, "/orders?x=1")
    took = time.monotonic() - started
    assert status == 200, body
    answer = json.loads(body)
    print(f"\nfirst answer through the Gateway from zero: {took:.2f}s")
    assert answer["rawPath"] == "/orders"
    assert answer["host"] == f"{function_url}:{gateway.HOST_HTTPS_PORT}"
    assert answer["forwardedProto"] == "https"
    # The host is the client; the Gateway's Envoy and the activator are not.
    assert answer["sourceIp"] == gateway.HOST_ADDRESS


def test_a_client_sent_x_forwarded_for_does_not_change_the_source_ip(function_url: str) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=198.51.100.7"}
    status, _, body = served(function_url, "/", headers=spoofed)
    assert status == 200, body
    assert json.loads(body)["sourceIp"] == gateway.HOST_ADDRESS


def test_plain_http_is_redirected_to_https(function_url: str) -> None:
    status, headers, _ = request(function_url, "/a?b=c", https=False)
    assert status == 301
    assert headers["location"] == gateway.url(function_url, "/a?b=c")


def test_a_cors_preflight_is_answered_with_the_policy_without_starting_a_pod(
    namespace: str, function_url: str
) -> None:
    wait_at_zero(namespace, "site", timeout=90)
    asked = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    status, headers, body = served(function_url, "/orders", method="OPTIONS", headers=asked)
    assert status == 200, body
    assert headers["access-control-allow-origin"] == ORIGIN
    assert set(headers["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
    assert "content-type" in headers["access-control-allow-headers"]
    assert headers["access-control-max-age"] == "600"
    # A refused origin gets no CORS headers, so the browser refuses the call.
    _, refused, _ = request(function_url, "/orders", method="OPTIONS",
                            headers={**asked, "Origin": "https://evil.example.net"})  # fmt: skip
    assert "access-control-allow-origin" not in refused
    time.sleep(3)
    assert function_pods(namespace, "site") == []
    deployment = kubectl_json("-n", namespace, "get", "deployment", "site")
    assert deployment["spec"].get("replicas", 0) == 0


def test_an_allowed_origin_gets_the_policys_headers_instead_of_the_functions(
    function_url: str,
) -> None:
    status, headers, body = served(function_url, "/", headers={"Origin": ORIGIN})
    assert status == 200, body
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["access-control-expose-headers"] == "x-request-id"


# --- HTTP Triggers with a host ----------------------------------------------------------------


def trigger(namespace: str, name: str, **http: Any) -> None:
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"functionRef": {"name": "site"}, "http": http},
        }
    )


def test_a_trigger_with_a_host_answers_over_https_from_zero(
    namespace: str, function_url: str
) -> None:
    host = f"api-{namespace}.{gateway.DOMAIN}"
    trigger(namespace, "api", host=host, pathPrefix="/api")
    wait_condition("trigger", namespace, "api", "Ready", "True")
    body = kubectl_json("-n", namespace, "get", "trigger", "api")
    assert body["status"]["url"] == gateway.url(host, "/api")
    assert condition("trigger", namespace, "api", "Exposed")["status"] == "True"
    wait_at_zero(namespace, "site", timeout=90)
    status, _, answer = served(host, "/api/items")
    assert status == 200, answer
    assert json.loads(answer)["rawPath"] == "/api/items"


def test_a_trigger_on_a_listener_that_refuses_its_namespace_is_not_ready_with_the_gateways_reason(
    namespace: str, function_url: str
) -> None:
    host = gateway.host_name(f"private-{namespace}", restricted=True)
    trigger(
        namespace,
        "private",
        host=host,
        gateway={"name": gateway.NAME, "namespace": gateway.NAMESPACE,
                 "sectionName": gateway.LISTENER_RESTRICTED},
    )  # fmt: skip
    ready = wait_condition("trigger", namespace, "private", "Ready", "False")
    assert ready["reason"] == "NotAllowedByListeners", ready
    assert gateway.LISTENER_RESTRICTED in ready["message"]
    kubectl("-n", namespace, "delete", "trigger", "private")


def test_a_trigger_waiting_for_its_gateway_is_exposed_when_the_gateway_comes_and_goes(
    namespace: str, function_url: str
) -> None:
    # A Gateway of a class no controller claims: kfn sees it come and writes the route, which
    # then waits for an answer nobody gives. Nothing touches the Trigger meanwhile.
    late = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "late", "namespace": namespace},
        "spec": {
            "gatewayClassName": "kfn-tests-unclaimed",
            "listeners": [{"name": "web", "port": 80, "protocol": "HTTP"}],
        },
    }
    host = f"late-{namespace}.{gateway.DOMAIN}"
    trigger(
        namespace, "late", host=host,
        gateway={"name": "late", "namespace": namespace, "sectionName": "web"},
    )  # fmt: skip
    waiting = wait_condition("trigger", namespace, "late", "Exposed", "False")
    assert waiting["reason"] == "GatewayNotFound", waiting
    apply(late)
    exposing = wait_condition("trigger", namespace, "late", "Exposed", "Unknown")
    assert exposing["reason"] == "Exposing", exposing
    assert kubectl_json("-n", namespace, "get", "httproutes", "-l", "kfn.dev/trigger=late")["items"]
    kubectl("-n", namespace, "delete", "gateway", "late")
    gone = wait_condition("trigger", namespace, "late", "Exposed", "False")
    assert gone["reason"] == "GatewayNotFound", gone
    kubectl("-n", namespace, "delete", "trigger", "late")


# --- a Function URL's auth type -------------------------------------------------------------


def test_a_function_url_with_token_auth_answers_only_callers_rbac_lets_invoke(
    namespace: str, image: str
) -> None:
    deploy(namespace, "private", image, url={"auth": "ServiceAccountToken"})
    wait_condition("function", namespace, "private", "Exposed", "True")
    host = url_host("private", namespace)
    status, _, body = served(host, "/")
    assert status == 401, body
    assert json.loads(body)["errorType"] == "UnrecognizedClientException"
    status, _, body = served(host, "/", headers={"Authorization": "Bearer not-a-token"})
    assert status in (401, 403), body
    status, _, body = served(host, "/", headers=bearer())
    assert status == 200, body
