"""The local cluster runs real workloads: images from its registry, Services, DNS, scaling."""

from __future__ import annotations

import json
import pathlib
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from kfncluster import config, network
from tests.cluster.kubeutil import kubectl, kubectl_json, push_python_app, wait_for

pytestmark = pytest.mark.cluster

SERVER = """\
import http.server, socket, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {socket.gethostname()} path={self.path}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("request", self.path, flush=True)

print("listening on 8080", flush=True)
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""

RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _deployment(name: str, image: str, replicas: int, command: list[str] | None = None) -> dict:
    container: dict = {
        "name": "app",
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080}],
        "securityContext": RESTRICTED,
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    }
    if command:
        container["command"] = command
        del container["readinessProbe"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
            },
        },
    }


@pytest.fixture(scope="module")
def namespace(cluster: pathlib.Path) -> Iterator[str]:
    name = f"cluster-test-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def image() -> str:
    return push_python_app("tests/echo", "v1", {"server.py": SERVER}, ["python3", "server.py"])


@pytest.fixture(scope="module")
def echo(namespace: str, image: str) -> str:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    objects = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [_deployment("echo", image, 1), service],
    }
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(objects))
    kubectl("-n", namespace, "rollout", "status", "deployment/echo", "--timeout=120s")
    return "echo"


@pytest.fixture(scope="module")
def client_pod(namespace: str, image: str) -> str:
    kubectl(
        "-n", namespace, "apply", "-f", "-",
        input=json.dumps(_deployment("client", image, 1, ["sleep", "infinity"])),
    )  # fmt: skip
    kubectl("-n", namespace, "rollout", "status", "deployment/client", "--timeout=120s")
    return kubectl(
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        "app=client",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    )


def _ready_pods(namespace: str, app: str) -> list[dict]:
    pods = kubectl_json("-n", namespace, "get", "pods", "-l", f"app={app}")["items"]
    return [
        p
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", [])
        )
    ]


def _in_pod(namespace: str, pod: str, code: str) -> str:
    return kubectl("-n", namespace, "exec", pod, "--", "python3", "-c", code)


def test_node_is_ready_and_reports_the_pinned_release(cluster: pathlib.Path) -> None:
    node = kubectl_json("get", "node", config.NODE_NAME)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert len(kubectl_json("get", "nodes")["items"]) == 1
    version = json.loads(kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == config.KUBERNETES_VERSION
    assert node["status"]["nodeInfo"]["kubeletVersion"] == config.KUBERNETES_VERSION


def test_pushed_image_answers_http_at_its_pod_ip_from_the_host(namespace: str, echo: str) -> None:
    pod = _ready_pods(namespace, echo)[0]
    ip = pod["status"]["podIP"]
    with urllib.request.urlopen(f"http://{ip}:8080/from-host", timeout=5) as resp:
        body = resp.read().decode()
    assert body == f"hello from {pod['metadata']['name']} path=/from-host\n"


def test_another_pod_reaches_it_through_its_service_by_dns_name(
    namespace: str, echo: str, client_pod: str
) -> None:
    fetch = (
        "import urllib.request;"
        "print(urllib.request.urlopen('http://{host}/via-dns', timeout=5).read().decode(), end='')"
    )
    short = _in_pod(namespace, client_pod, fetch.format(host="echo"))
    fqdn = _in_pod(
        namespace, client_pod, fetch.format(host=f"echo.{namespace}.svc.{config.CLUSTER_DOMAIN}")
    )
    assert short.startswith("hello from echo-")
    assert short.endswith("path=/via-dns\n")
    assert fqdn.startswith("hello from echo-")


def test_deployment_scales_from_zero_to_three_and_back_to_zero(namespace: str, echo: str) -> None:
    kubectl("-n", namespace, "scale", "deployment/echo", "--replicas=0")
    wait_for(
        "no echo pods",
        lambda: not kubectl_json("-n", namespace, "get", "pods", "-l", "app=echo")["items"],
    )
    kubectl("-n", namespace, "scale", "deployment/echo", "--replicas=3")
    pods = wait_for(
        "3 ready echo pods",
        lambda: len(_ready_pods(namespace, echo)) == 3 and _ready_pods(namespace, echo),
        timeout=90,
    )
    assert len({p["status"]["podIP"] for p in pods}) == 3
    kubectl("-n", namespace, "scale", "deployment/echo", "--replicas=0")
    wait_for(
        "no echo pods",
        lambda: not kubectl_json("-n", namespace, "get", "pods", "-l", "app=echo")["items"],
    )
    kubectl("-n", namespace, "scale", "deployment/echo", "--replicas=1")
    wait_for("1 ready echo pod", lambda: _ready_pods(namespace, echo), timeout=90)


def test_kubectl_logs_and_exec_work(namespace: str, echo: str) -> None:
    pod = _ready_pods(namespace, echo)[0]
    ip = pod["status"]["podIP"]
    urllib.request.urlopen(f"http://{ip}:8080/logged", timeout=5).read()
    logs = wait_for(
        "the request in the pod's log",
        lambda: (
            (out := kubectl("-n", namespace, "logs", pod["metadata"]["name"]))
            and "request /logged" in out
            and out
        ),
    )
    assert "listening on 8080" in logs
    out = kubectl("-n", namespace, "exec", pod["metadata"]["name"], "--", "id", "-u")
    assert out.strip() == "65532"


def test_pods_have_no_route_off_the_machine_and_only_the_cluster_resolver(
    namespace: str, client_pod: str
) -> None:
    assert network.guard_installed(), "the egress guard chain must be first in mangle FORWARD"
    routes = _in_pod(namespace, client_pod, "print(open('/proc/net/route').read())")
    destinations = [line.split()[1] for line in routes.splitlines()[1:] if line.strip()]
    assert "00000000" not in destinations, f"a pod has a default route:\n{routes}"
    resolv = _in_pod(namespace, client_pod, "print(open('/etc/resolv.conf').read())")
    nameservers = [ln.split()[1] for ln in resolv.splitlines() if ln.startswith("nameserver")]
    assert nameservers == [config.DNS_SERVICE_IP]


def test_nothing_masquerades_pod_traffic_and_dns_has_no_upstream(cluster: pathlib.Path) -> None:
    conf = json.loads((config.Paths().cni_conf_dir / "10-kfn.conflist").read_text())
    assert [p.get("ipMasq") for p in conf["plugins"]] == [False]
    nat = network._run("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").stdout
    assert "CNI-" not in nat
    for line in nat.splitlines():
        if "MASQUERADE" in line:
            assert "-s 10.244." not in line, line
    corefile = kubectl_json("-n", "kube-system", "get", "configmap", "coredns")["data"]["Corefile"]
    assert "forward" not in corefile
    assert "proxy" not in corefile
    kubelet_resolv = (config.Paths().config / "pod-resolv.conf").read_text()
    assert kubelet_resolv.strip() == f"nameserver {config.DNS_SERVICE_IP}"


def test_cluster_dns_answers_for_services_and_refuses_other_names(
    namespace: str, client_pod: str
) -> None:
    code = (
        "import socket\n"
        "print(socket.gethostbyname('kubernetes.default.svc.cluster.local'))\n"
        "try:\n"
        "    socket.gethostbyname('no-such-host.invalid')\n"
        "    print('resolved')\n"
        "except OSError:\n"
        "    print('refused')\n"
    )
    out = _in_pod(namespace, client_pod, code).split()
    assert out == [config.KUBERNETES_SERVICE_IP, "refused"]
