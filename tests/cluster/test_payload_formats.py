"""HTTP Triggers choose the event their handler was written for: API Gateway REST (payload
1.0), an Application Load Balancer target (alb) or the HTTP API / Function URL (2.0), with the
route's prefix stripped when asked. Called from the host through the local Gateway, over HTTPS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage, gateway
from tests.cluster.edge import ensure_gateway, served
from tests.cluster.invoking import deploy
from tests.cluster.kubeutil import apply, kubectl_json, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

HANDLER = """\
import json


def handler(event, context):
    seen = {
        "version": event.get("version"),
        "httpMethod": event.get("httpMethod"),
        "path": event.get("path") or event.get("rawPath"),
        "multiValueQueryStringParameters": event.get("multiValueQueryStringParameters"),
        "queryStringParameters": event.get("queryStringParameters"),
        "sourceIp": (event.get("requestContext", {}).get("identity") or {}).get("sourceIp"),
        "elb": "elb" in event.get("requestContext", {}),
    }
    return {
        "statusCode": 201,
        "multiValueHeaders": {"x-seen": ["a", "b"]},
        "headers": {"content-type": "application/json"},
        "body": json.dumps(seen),
        "isBase64Encoded": False,
    }
"""


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    ensure_gateway()
    with scratch_namespace("payloads") as name:
        image = fnimage.push_python_function("tests/payloads", "v1", {"app.py": HANDLER})
        deploy(name, "echo", image)
        yield name


def trigger(namespace: str, name: str, **http: Any) -> str:
    host = f"{name}-{namespace}.{gateway.DOMAIN}"
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"functionRef": {"name": "echo"}, "http": {"host": host, **http}},
        }
    )

    def ready() -> bool:
        conds = kubectl_json("-n", namespace, "get", "trigger", name).get("status", {})
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in conds.get("conditions", [])
        )

    wait_for(f"Trigger {name} Ready", ready, timeout=120)
    return host


def test_a_rest_api_handler_gets_payload_1_0_below_its_stripped_prefix(namespace: str) -> None:
    host = trigger(namespace, "rest", pathPrefix="/api", payloadFormat="1.0", stripPrefix=True)
    status, headers, body = served(host, "/api/orders/42?tag=a&tag=b")
    assert status == 201, body
    seen = json.loads(body)
    assert seen["httpMethod"] == "GET"
    assert seen["path"] == "/orders/42"
    assert seen["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert seen["sourceIp"] == gateway.HOST_ADDRESS
    assert headers["x-seen"] == "a, b"


def test_an_alb_target_gets_the_load_balancers_event(namespace: str) -> None:
    host = trigger(namespace, "alb", payloadFormat="alb")
    status, _, body = served(host, "/x?q=a%20b")
    assert status == 201, body
    seen = json.loads(body)
    assert seen["elb"] is True
    assert seen["path"] == "/x"
    assert seen["queryStringParameters"] == {"q": "a%20b"}  # an ALB does not decode them


def test_the_default_stays_the_function_urls_payload_2_0_with_the_full_path(
    namespace: str,
) -> None:
    host = trigger(namespace, "httpapi", pathPrefix="/v2")
    status, _, body = served(host, "/v2/items")
    assert status == 201, body
    seen = json.loads(body)
    assert seen["version"] == "2.0"
    assert seen["path"] == "/v2/items"
