"""NetworkPolicy is enforced on the local cluster, by kube-router's firewall alone.

Pods talk to each other by pod IP, from one client pod to one server pod, in namespaces of
their own. Every attempt is one TCP connection with a 3 s bound, made from inside the client
pod, and a change of policy is waited for by polling such attempts (kube-router applies a
policy within about a second), so neither the order nor the time is left to chance.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import cluster as kcluster
from kfncluster import config, kuberouter, network, procs
from tests.cluster.kubeutil import (
    kubectl,
    kubectl_json,
    push_python_app,
    scratch_namespace,
    wait_for,
)

pytestmark = pytest.mark.cluster

SERVER = """\
import http.server

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"served\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass

http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""

#: One bounded attempt from the client pod: ``ok``, ``refused`` (kube-router REJECTs) or
#: ``timeout``, and the seconds it took.
PROBE = """\
import socket, sys, time
t0 = time.monotonic()
try:
    with socket.create_connection((sys.argv[1], 8080), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        outcome = "ok" if s.recv(64).startswith(b"HTTP/1.0 200") else "odd"
except ConnectionRefusedError:
    outcome = "refused"
except TimeoutError:
    outcome = "timeout"
print(outcome, round(time.monotonic() - t0, 2))
"""
BOUND = 3.0
BLOCKED = ("refused", "timeout")

RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.fixture(scope="module")
def enforcer(cluster: pathlib.Path) -> procs.Record:
    record = kcluster.supervisor(config.Paths()).record(kuberouter.NAME)
    if record is None or not record.alive():
        pytest.fail("kube-router does not run: bring the cluster up with `make cluster`")
    return record


@pytest.fixture(scope="module")
def image(enforcer: procs.Record) -> str:
    return push_python_app("tests/netpol", "v1", {"server.py": SERVER}, ["python3", "server.py"])


def _pod(name: str, image: str, labels: dict[str, str], *, serve: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "securityContext": RESTRICTED}
    if serve:
        container["ports"] = [{"containerPort": 8080}]
        container["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    else:
        container["command"] = ["sleep", "infinity"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
    }


def _run(namespace: str, pod: dict[str, Any]) -> str:
    """Starts ``pod`` in ``namespace``; returns its name once it is Ready."""
    name: str = pod["metadata"]["name"]
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    ready = ("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
    kubectl("-n", namespace, *ready, timeout=130)
    return name


def _server(namespace: str, image: str) -> str:
    """The server pod's IP."""
    name = _run(namespace, _pod("server", image, {"app": "server"}, serve=True))
    ip: str = kubectl_json("-n", namespace, "get", "pod", name)["status"]["podIP"]
    return ip


def _reach(namespace: str, client: str, ip: str) -> str:
    """One attempt of ``client`` to reach ``ip``:8080: its outcome, checked to be bounded."""
    out = kubectl("-n", namespace, "exec", client, "--", "python3", "-c", PROBE, ip)
    outcome, seconds = out.split()
    assert float(seconds) <= BOUND + 0.5, f"an attempt took {seconds}s"
    return outcome


def _refused(namespace: str, client: str, ip: str, what: str) -> str:
    """Waits until an attempt of ``client`` fails (up to 30 s); returns how it failed."""

    def attempt() -> str | None:
        outcome = _reach(namespace, client, ip)
        return None if outcome == "ok" else outcome

    return wait_for(what, attempt, timeout=30, every=0.5)


def _policy(name: str, ingress: list[dict[str, Any]], selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def _apply(namespace: str, obj: dict[str, Any]) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    """Up to three namespaces of the test's own, all deleted afterwards."""
    with (
        scratch_namespace("netpol") as a,
        scratch_namespace("netpol-peer") as b,
        scratch_namespace("netpol-other") as c,
    ):
        yield [a, b, c]


def test_a_default_deny_policy_cuts_a_client_off_until_a_policy_for_its_label_lets_it_in(
    namespaces: list[str], image: str
) -> None:
    ns = namespaces[0]
    ip = _server(ns, image)
    client = _run(ns, _pod("client", image, {"role": "client"}, serve=False))
    stranger = _run(ns, _pod("stranger", image, {"role": "stranger"}, serve=False))
    assert _reach(ns, client, ip) == "ok"
    assert _reach(ns, stranger, ip) == "ok"

    _apply(ns, _policy("deny-all-ingress", [], {}))
    assert _refused(ns, client, ip, "the client cut off") in BLOCKED
    assert _reach(ns, stranger, ip) in BLOCKED

    allow = [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]
    _apply(ns, _policy("allow-clients", allow, {"matchLabels": {"app": "server"}}))
    wait_for("the client let in", lambda: _reach(ns, client, ip) == "ok", timeout=30, every=0.5)
    assert _reach(ns, stranger, ip) in BLOCKED, "the policy let in a pod without the label"


def test_a_namespace_selector_lets_in_the_namespace_it_names_and_refuses_another(
    namespaces: list[str], image: str
) -> None:
    ns, peer_ns, other_ns = namespaces
    ip = _server(ns, image)
    peer = _run(peer_ns, _pod("client", image, {"role": "client"}, serve=False))
    other = _run(other_ns, _pod("client", image, {"role": "client"}, serve=False))
    assert _reach(other_ns, other, ip) == "ok"

    peers = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer_ns}}}
    _apply(ns, _policy("allow-peer-namespace", [{"from": [peers]}], {}))
    assert _refused(other_ns, other, ip, "the other namespace refused") in BLOCKED
    assert _reach(peer_ns, peer, ip) == "ok"


def test_kube_router_listens_on_nothing_and_adds_no_route_masquerade_or_service_proxy(
    enforcer: procs.Record,
) -> None:
    assert kuberouter.problems(enforcer.pid) == []
    assert pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    assert network.guard_installed(), f"{config.SAFETY_CHAIN} must stay first in mangle FORWARD"

    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    assert run("ip", "route", "show", "table", "all", "proto", "zebra") == "", "its routes"
    links = [line.split()[0].split("@")[0] for line in run("ip", "-br", "link").splitlines()]
    assert not [n for n in links if n in ("kube-bridge", "kube-dummy-if") or n.startswith("tun-")]
    nat = run("iptables", "-w", "-t", "nat", "-S")
    assert "KUBE-ROUTER" not in nat, "kube-router's service proxy or pod egress rules"
    logs = kcluster.supervisor(config.Paths()).log_path(kuberouter.NAME).read_text()
    log = logs.rsplit("\n=== ", 1)[-1]  # this start's
    assert kuberouter.STARTED in log
    assert "forbidden" not in log, "its role lacks a permission its informers need"
