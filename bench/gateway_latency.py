"""What the activator and the function's runtime add behind the cluster's Gateway.

Two paths from this host, both over HTTPS through the local Gateway (Envoy Gateway, node port
30443, certificate verified against the cluster CA), measured in the same run:

* **gateway → plain backend**: an HTTPRoute straight to a Deployment of a tiny HTTP/1.1
  server (Python's ``http.server``, keep-alive) answering a fixed body: the floor of any
  backend behind this Gateway.
* **gateway → activator → function**: a Function URL (the route kfn writes) to a warm
  Python function (``minReplicas: 1``) returning the same body.

Each round runs both paths one after the other, in a rotated order, each with ``--connections``
keep-alive TLS connections sending ``--requests`` requests in all, back to back; every
request is timed from its first byte sent to its last byte read. Prints p50/p90/p99 of each
path over all rounds, and what kfn adds (the difference of the percentiles).

    .venv/bin/python bench/gateway_latency.py --rounds 3 --requests 600

Expects ``make up`` (kfn and the local Gateway). Everything it creates lives in one
namespace deleted at the end. Traffic goes only to the node's address.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "hack" / "cluster")]

from tests.cluster.kubeutil import kubectl, kubectl_json, push_python_app  # noqa: E402

from kfncluster import fnimage, gateway  # noqa: E402

NAMESPACE = "bench-gateway"
BODY = '{"ok": true}'
HANDLER = f"""\
def handler(event, context):
    return {{"statusCode": 200, "headers": {{"content-type": "application/json"}},
            "body": {BODY!r}}}
"""
PLAIN = f"""\
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # head and body leave in one write (no Nagle wait on the second)
    disable_nagle_algorithm = True
    def do_GET(self):
        body = {BODY.encode()!r}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def apply(obj: dict[str, object]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(obj))


def wait(what: str, check: object, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(1)
    raise SystemExit(f"{what} did not happen within {timeout:.0f}s")


def set_up() -> tuple[str, str]:
    """The function and the plain backend, each routed through the Gateway; their hosts."""
    kubectl("create", "namespace", NAMESPACE, check=False)
    image = fnimage.push_python_function("bench/gateway", "v1", {"app.py": HANDLER})
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "fn", "namespace": NAMESPACE},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "source": {"image": image},
                "concurrency": 8,
                "scale": {"minReplicas": 1},
                "url": {},
            },
        }
    )
    plain_image = push_python_app("bench/gateway-plain", "v2", {"server.py": PLAIN},
                                  ["python3", "server.py"])  # fmt: skip
    labels = {"app": "plain"}
    apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "plain", "namespace": NAMESPACE},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "plain", "image": plain_image, "securityContext": RESTRICTED,
                             "ports": [{"containerPort": 8080}]}
                        ]
                    },
                },
            },
        }
    )  # fmt: skip
    apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "plain", "namespace": NAMESPACE},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    plain_host = f"plain-{NAMESPACE}.{gateway.DOMAIN}"
    apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "plain", "namespace": NAMESPACE},
            "spec": {
                "parentRefs": [{"name": gateway.NAME, "namespace": gateway.NAMESPACE,
                                "sectionName": gateway.LISTENER_HTTPS}],
                "hostnames": [plain_host],
                "rules": [{"backendRefs": [{"name": "plain", "port": 80}]}],
            },
        }
    )  # fmt: skip
    kubectl("-n", NAMESPACE, "rollout", "status", "deployment/plain", "--timeout=180s")

    def exposed() -> bool:
        status = kubectl_json("-n", NAMESPACE, "get", "function", "fn").get("status") or {}
        return bool(status.get("functionUrl")) and (status.get("readyReplicas") or 0) >= 1

    wait("the function's URL served by a ready pod", exposed)
    return f"fn-{NAMESPACE}.{gateway.DOMAIN}", plain_host


class Client:
    """One keep-alive HTTPS connection to the Gateway for one host."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.conn = gateway.connection(host, gateway.HOST_HTTPS_PORT)

    def get(self) -> float:
        started = time.perf_counter()
        self.conn.request("GET", "/", headers={"Host": f"{self.host}:{gateway.HOST_HTTPS_PORT}"})
        resp = self.conn.getresponse()
        body = resp.read()
        took = time.perf_counter() - started
        if resp.status != 200 or body != BODY.encode():
            raise SystemExit(f"{self.host}: {resp.status} {body[:200]!r}")
        return took

    def close(self) -> None:
        self.conn.close()


def run(host: str, requests: int, connections: int) -> list[float]:
    clients = [Client(host) for _ in range(connections)]
    for c in clients:  # the TLS handshakes and upstream connections are not measured
        for _ in range(5):
            c.get()
    results: list[list[float]] = [[] for _ in clients]

    def work(i: int) -> None:
        for _ in range(requests // connections):
            results[i].append(clients[i].get())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    return [x for r in results for x in r]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=600, help="per path and round")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the namespace")
    args = parser.parse_args()
    try:
        fn_host, plain_host = set_up()
        paths = {"gateway → plain backend": plain_host, "gateway → activator → function": fn_host}
        for host in paths.values():  # warm both: pools, pods, caches
            run(host, 200, args.connections)
        samples: dict[str, list[float]] = {name: [] for name in paths}
        names = list(paths)
        for round_ in range(args.rounds):
            order = names[round_ % 2 :] + names[: round_ % 2]
            for name in order:
                took = run(paths[name], args.requests, args.connections)
                samples[name] += took
                print(f"round {round_ + 1} {name}: p50 {pct(took, 0.5):.2f} ms, "
                      f"p99 {pct(took, 0.99):.2f} ms over {len(took)}", flush=True)  # fmt: skip
        print(f"\n{'path':34} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
        for name, values in samples.items():
            print(f"{name:34} {len(values):>6} {pct(values, 0.5):>8.2f} {pct(values, 0.9):>8.2f} "
                  f"{pct(values, 0.99):>8.2f} {statistics.fmean(values) * 1000:>8.2f}")  # fmt: skip
        base, kfn = (samples[n] for n in names)
        print(f"\nadded by the activator and the function's runtime: "
              f"p50 +{pct(kfn, 0.5) - pct(base, 0.5):.2f} ms, "
              f"p99 +{pct(kfn, 0.99) - pct(base, 0.99):.2f} ms "
              f"(ratio p50 {pct(kfn, 0.5) / pct(base, 0.5):.2f}x)")  # fmt: skip
    finally:
        if not args.keep:
            kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


if __name__ == "__main__":
    main()
