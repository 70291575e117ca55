"""Pod start latency on the local cluster: the floor under every kfn cold start.

Each trial scales a ready-made Deployment from 0 to 1 with ``kubectl scale``
and measures the time until the new pod answers HTTP at its pod IP (polled
every 10 ms), then scales back to 0 and waits for the pod to go. Prints every
trial and p50/p90/p99.

    python bench/pod_start.py --trials 20
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "hack" / "cluster")]

from kubernetes import client, config  # noqa: E402
from tests.cluster.kubeutil import KUBECONFIG, kubectl, push_python_app  # noqa: E402

SERVER = """\
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("", 8080), H).serve_forever()
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0, help="per trial, seconds")
    args = parser.parse_args()

    subprocess.run(
        [sys.executable, "-m", "kfncluster", "up"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'hack' / 'cluster'}"},
        check=True,
    )
    image = push_python_app(
        "bench/pod-start", "v1", {"server.py": SERVER}, ["python3", "server.py"]
    )
    ns = f"bench-pod-start-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "target"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "target"}},
            "template": {
                "metadata": {"labels": {"app": "target"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "securityContext": {
                                "runAsNonRoot": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            },
        },
    }
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment))
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(KUBECONFIG)))
    # Warm the image into the node once, so trials measure starts, not a pull.
    kubectl("-n", ns, "scale", "deployment/target", "--replicas=1")
    kubectl("-n", ns, "rollout", "status", "deployment/target", "--timeout=120s")
    _scale_to_zero(api, ns)

    results: list[float] = []
    try:
        for trial in range(1, args.trials + 1):
            t0 = time.monotonic()
            kubectl("-n", ns, "scale", "deployment/target", "--replicas=1")
            elapsed = _wait_answer(api, ns, t0, args.timeout)
            results.append(elapsed)
            print(f"trial {trial:2d}/{args.trials}: {elapsed * 1000:7.0f} ms", flush=True)
            _scale_to_zero(api, ns)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    p50, p90, p99 = (percentile(results, q) * 1000 for q in (50, 90, 99))
    print(
        f"\npod start (kubectl scale 0→1 → HTTP 200 at pod IP), {len(results)} trials: "
        f"p50 {p50:.0f} ms, p90 {p90:.0f} ms, p99 {p99:.0f} ms, "
        f"mean {statistics.mean(results) * 1000:.0f} ms"
    )
    return 0


def _wait_answer(api: client.CoreV1Api, ns: str, t0: float, timeout: float) -> float:
    while time.monotonic() - t0 < timeout:
        pods = api.list_namespaced_pod(ns, label_selector="app=target").items
        ips = [
            p.status.pod_ip for p in pods if p.status.pod_ip and not p.metadata.deletion_timestamp
        ]
        for ip in ips:
            try:
                with urllib.request.urlopen(f"http://{ip}:8080/", timeout=1) as resp:
                    if resp.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
        time.sleep(0.01)
    raise SystemExit(f"no answer within {timeout}s")


def _scale_to_zero(api: client.CoreV1Api, ns: str) -> None:
    kubectl("-n", ns, "scale", "deployment/target", "--replicas=0")
    while api.list_namespaced_pod(ns, label_selector="app=target").items:
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
