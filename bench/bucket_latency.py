"""Upload → invocation latency of bucket Triggers (Push and Poll), next to a direct invoke.

On the local cluster, in one namespace: a versitygw store whose webhook points at
kfn-bucket, a warm function that POSTs each event to a sink on the node address, and two
Triggers on two buckets, one Push and one Poll (``pollInterval`` 1s). Three measurements,
interleaved trial by trial so the machine's load weighs on them alike, each timed on the
host's clock from the start of the request to the sink receiving the handler's POST:

* **direct** — a synchronous ``RequestResponse`` invoke to the activator's ClusterIP: the
  floor any trigger pays (activator, runtime, handler, the POST to the sink);
* **push** — a PutObject to the store: the store's webhook, kfn-bucket's routing and its
  delivery through the activator;
* **poll** — a PutObject to the polled bucket: on top, up to one poll interval of waiting
  (p50 is expected near half the interval).

Prints p50/p99 of each and the Push margin over the direct floor.

    .venv/bin/python bench/bucket_latency.py --trials 50

Expects kfn installed (``make up``) with the versitygw image built by ``kfncluster up``.
Everything lives in one namespace, deleted at the end; traffic stays on this machine.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import pathlib
import socket
import statistics
import sys
import threading
import time
import uuid
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "hack" / "cluster")]

from tests.cluster import stores  # noqa: E402
from tests.cluster.invoking import bearer  # noqa: E402
from tests.cluster.kubeutil import (  # noqa: E402
    apply,
    kubectl,
    kubectl_json,
    python_function,
    wait_for,
)

from kfncluster import fnimage  # noqa: E402

NODE = "10.244.0.1"
HANDLER = """\
import json, os, urllib.request


def handler(event, context):
    request = urllib.request.Request(os.environ["SINK_URL"], data=json.dumps(event).encode(),
                                     method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    return {"ok": True}
"""


class Sink:
    """Notes when each marker arrives (host clock), on the node address only."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                now = time.time()
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                marker = event.get("marker") or (
                    event.get("Records", [{}])[0].get("s3", {}).get("object", {}).get("key")
                )
                with sink.cond:
                    sink.arrived[str(marker)] = now
                    sink.cond.notify_all()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        with socket.socket() as probe:
            probe.bind((NODE, 0))
            port = probe.getsockname()[1]
        self.server = http.server.ThreadingHTTPServer((NODE, port), Handler)
        self.url = f"http://{NODE}:{port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, marker: str, timeout: float = 60) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: marker in self.arrived, timeout):
                raise TimeoutError(f"{marker} never arrived")
            return self.arrived[marker]


def quantiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {cuts[49] * 1000:7.1f} ms   p99 {cuts[98] * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    namespace = f"bench-bucket-{uuid.uuid4().hex[:6]}"
    sink = Sink()
    image = fnimage.push_python_function("bench/bucket", "v1", {"app.py": HANDLER})
    kubectl("create", "namespace", namespace)
    try:
        store = stores.deploy_s3_store(
            namespace, webhook_url=stores.events_url("kfn-system", namespace)
        )
        python_function(namespace, "sinker", image, env=[{"name": "SINK_URL", "value": sink.url}],
                        scale={"idleTimeout": "10m"})  # fmt: skip
        for bucket, mode in (("pushed", "Push"), ("polled", "Poll")):
            store.create_bucket(bucket)
            spec: dict[str, Any] = {"endpoint": store.endpoint, "bucket": bucket, "mode": mode,
                                    "events": ["s3:ObjectCreated:*"]}  # fmt: skip
            if mode == "Poll":
                spec |= {"pollInterval": "1s", "credentialsSecretRef": {"name": store.secret_name}}
            apply(
                {
                    "apiVersion": "kfn.dev/v1alpha1",
                    "kind": "Trigger",
                    "metadata": {"name": bucket, "namespace": namespace},
                    "spec": {"functionRef": {"name": "sinker"}, "bucket": spec},
                }
            )
        wait_for("the poll baseline",
                 lambda: kubectl_json("-n", namespace, "get", "configmap", "kfn-bucket-polled"),
                 timeout=60)  # fmt: skip
        service = kubectl_json("-n", "kfn-system", "get", "service", "kfn-invoke")["spec"]
        activator = (service["clusterIP"], int(service["ports"][0]["port"]))

        def direct(marker: str) -> float:
            started = time.time()
            connection = http.client.HTTPConnection(*activator, timeout=60)
            connection.request(
                "POST", f"/_kfn/functions/{namespace}/sinker/invoke",
                json.dumps({"marker": marker}),
                {"Kfn-Invocation-Type": "RequestResponse", **bearer()},
            )  # fmt: skip
            connection.getresponse().read()
            connection.close()
            return sink.wait(marker) - started

        def upload(bucket: str, marker: str) -> float:
            started = time.time()
            store.put_object(bucket, marker, b"x")
            return sink.wait(marker) - started

        direct("warm-up")
        upload("pushed", "warm-up-push")
        results: dict[str, list[float]] = {"direct": [], "push": [], "poll": []}
        for trial in range(args.trials):
            results["direct"].append(direct(f"d{trial}"))
            results["push"].append(upload("pushed", f"u{trial}"))
            results["poll"].append(upload("polled", f"p{trial}"))
            print(
                f"trial {trial:3d}: direct {results['direct'][-1] * 1000:7.1f} ms  "
                f"push {results['push'][-1] * 1000:7.1f} ms  "
                f"poll {results['poll'][-1] * 1000:7.1f} ms",
                flush=True,
            )
        print()
        for name, values in results.items():
            print(f"{name:6s} {quantiles(values)}")
        margin = statistics.median(results["push"]) - statistics.median(results["direct"])
        print(f"push p50 over the direct floor: {margin * 1000:.1f} ms")
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
        sink.server.shutdown()


if __name__ == "__main__":
    main()
