"""The local Gateway answers from the host: Envoy Gateway, Envoy and cert-manager at work.

A tiny HTTP server (Python's, on the cluster's Debian base) runs in a namespace of its own with an
HTTPRoute on Gateway ``kfn-gateway/kfn``. The host calls it the way a developer's curl does:
the node address and node port for the name ``<namespace>.kfn.localhost``, the certificate
checked against the CA file bring-up wrote. Each change of routing is waited for by polling
such requests, so nothing hangs on a sleep.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import certmanager, gateway
from tests.cluster.kubeutil import (
    apply,
    kubectl,
    kubectl_json,
    push_python_app,
    scratch_namespace,
    wait_for,
)

pytestmark = pytest.mark.cluster

#: Answers every GET with the namespace it serves and who it saw: the peer address and the
#: X-Forwarded-For header.
SERVER = """\
import http.server, json, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "namespace": os.environ["NAMESPACE"],
            "peer": self.client_address[0],
            "xff": self.headers.get("X-Forwarded-For", ""),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass

http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""


class _GatewayConnection(http.client.HTTPSConnection):
    """HTTPS to ``name`` at ``address``: what ``curl --resolve name:port:address`` does."""

    def __init__(self, name: str, address: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(name, port, context=context, timeout=5)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _get(host: str, *, https: bool = True) -> tuple[int, bytes]:
    conn: http.client.HTTPConnection
    if https:
        ctx = ssl.create_default_context(cafile=str(gateway.ca_file()))
        conn = _GatewayConnection(host, gateway.HOST_ADDRESS, gateway.HOST_HTTPS_PORT, ctx)
    else:
        conn = http.client.HTTPConnection(gateway.HOST_ADDRESS, gateway.HOST_HTTP_PORT, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _answered(host: str, *, https: bool = True) -> tuple[int, bytes] | None:
    """The backend's answer, or None while the route is not programmed yet."""
    status, body = _get(host, https=https)
    return (status, body) if status == 200 else None


def _route(namespace: str, name: str, host: str, sections: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [
                {"name": gateway.NAME, "namespace": gateway.NAMESPACE, "sectionName": s}
                for s in sections
            ],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": "backend", "port": 8080}]}],
        },
    }


def _condition(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [c for c in conditions if c["type"] == kind]
    return found[0] if found else {}


@pytest.fixture(scope="module")
def backend(gateway_infra: None) -> Iterator[str]:
    """A namespace running the tiny server behind Service ``backend`` (port 8080)."""
    image = push_python_app(
        "tests/gateway-backend", "v1", {"server.py": SERVER}, ["python3", "server.py"]
    )
    with scratch_namespace("gw") as namespace:
        labels = {"app": "backend"}
        apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "backend", "namespace": namespace, "labels": labels},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "env": [{"name": "NAMESPACE", "value": namespace}],
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            }
        )
        apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "backend", "namespace": namespace},
                "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]},
            }
        )
        kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/backend", "--timeout=120s")
        yield namespace


def test_the_gateway_class_is_accepted_by_envoy_gateway(gateway_infra: None) -> None:
    cls = kubectl_json("get", "gatewayclass", gateway.GATEWAY_CLASS)
    assert _condition(cls["status"]["conditions"], "Accepted")["status"] == "True"
    assert cls["spec"]["parametersRef"]["name"] == gateway.ENVOY_PROXY


def test_the_gateway_is_programmed_with_its_three_listeners_at_the_node_address(
    gateway_infra: None,
) -> None:
    gw = kubectl_json("-n", gateway.NAMESPACE, "get", "gateway", gateway.NAME)
    assert _condition(gw["status"]["conditions"], "Programmed")["status"] == "True"
    assert {a["value"] for a in gw["status"]["addresses"]} == {gateway.HOST_ADDRESS}
    listeners = {item["name"]: item for item in gw["status"]["listeners"]}
    assert set(listeners) == {
        gateway.LISTENER_HTTP,
        gateway.LISTENER_HTTPS,
        gateway.LISTENER_RESTRICTED,
    }
    for listener in listeners.values():
        assert _condition(listener["conditions"], "Programmed")["status"] == "True", listener[
            "name"
        ]


def test_envoy_runs_the_local_image_in_pods_with_the_documented_labels(
    gateway_infra: None,
) -> None:
    selector = ",".join(f"{k}={v}" for k, v in gateway.ENVOY_POD_LABELS.items())
    pods = kubectl_json("-n", gateway.ENVOY_NAMESPACE, "get", "pods", "-l", selector)["items"]
    assert pods, f"no pod in {gateway.ENVOY_NAMESPACE} carries {selector}"
    for pod in pods:
        images = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
        assert images["envoy"].startswith("10.244.0.1:5000/kfn/envoy@sha256:")
        assert images["shutdown-manager"].startswith("10.244.0.1:5000/kfn/envoy-gateway@sha256:")


def test_the_ca_file_on_the_host_is_the_local_ca_of_cert_manager(gateway_infra: None) -> None:
    secret = kubectl_json("-n", certmanager.NAMESPACE, "get", "secret", certmanager.CA_SECRET)
    assert gateway.ca_file().read_bytes() == base64.b64decode(secret["data"]["ca.crt"])


def test_a_backend_is_reached_from_the_host_over_https_with_the_certificate_verified(
    backend: str,
) -> None:
    host = gateway.host_name(backend)
    apply(_route(backend, "public", host, [gateway.LISTENER_HTTPS, gateway.LISTENER_HTTP]))
    _, body = wait_for(
        f"GET https://{host} answered by the backend",
        lambda: _answered(host),
        timeout=60,
    )
    seen = json.loads(body)
    assert seen["namespace"] == backend
    # The request came through an Envoy pod, which names the host in X-Forwarded-For.
    envoy_ips = {
        pod["status"]["podIP"]
        for pod in kubectl_json(
            "-n", gateway.ENVOY_NAMESPACE, "get", "pods",
            "-l", ",".join(f"{k}={v}" for k, v in gateway.ENVOY_POD_LABELS.items()),
        )["items"]
    }  # fmt: skip
    assert seen["peer"] in envoy_ips
    assert seen["xff"] == gateway.HOST_ADDRESS


def test_a_backend_is_reached_from_the_host_over_plain_http_on_port_80(backend: str) -> None:
    host = gateway.host_name(backend)
    apply(_route(backend, "public", host, [gateway.LISTENER_HTTPS, gateway.LISTENER_HTTP]))
    _, body = wait_for(
        f"GET http://{host} answered by the backend",
        lambda: _answered(host, https=False),
        timeout=60,
    )
    assert json.loads(body)["namespace"] == backend


def test_the_restricted_listener_refuses_a_route_from_another_namespace(backend: str) -> None:
    host = gateway.host_name(backend, restricted=True)
    apply(_route(backend, "restricted", host, [gateway.LISTENER_RESTRICTED]))

    def refused() -> dict[str, Any] | None:
        route = kubectl_json("-n", backend, "get", "httproute", "restricted")
        parents = route.get("status", {}).get("parents", [])
        accepted = _condition(parents[0]["conditions"], "Accepted") if parents else {}
        return accepted if accepted.get("status") == "False" else None

    accepted = wait_for("the restricted route's status", refused, timeout=60)
    assert accepted["reason"] == "NotAllowedByListeners"
    # And the name it asked for is served by no route: the listener's TLS, then a 404.
    status, _ = _get(host)
    assert status == 404
