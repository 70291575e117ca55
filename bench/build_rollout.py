"""From ``kubectl apply`` of a code change to the new version answering, on the local cluster.

Each trial changes the code of an inline Python function (no dependencies, so the dependency
set is unchanged) and applies it with kubectl, then measures:

* **total**: the apply until ``POST /_kfn/invoke`` on the Service answers with the new version
  (polled every 50 ms from the host);
* **build**: the apply until the operator wrote the new image into ``status.image`` (it has
  seen the build Job end and applied the Deployment) — this includes the Job's scheduling,
  its pod starting and the Job controller noticing the end;
* **builder**: the time the builder itself ran, and **push**, its share pushing to the
  registry (both from the builder's termination message);
* **rollout**: from the new ``status.image`` to the new version answering (new pod started,
  ready, in the Service's endpoints).

Baseline, interleaved in the same run: the same change made without a build — a second
Function switched between two prebuilt images of the same runtime — from the apply until the new
version answers. The ratio is what building costs on top of rolling out.

Run after ``make up``: ``.venv/bin/python bench/build_rollout.py [--trials 10]``. It works in
its own namespace and deletes it at the end. Target: p50 of total ≤ 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO / "hack" / "cluster")]

from kfncluster import fnimage  # noqa: E402

KUBECONFIG = os.environ.get("KUBECONFIG", str(REPO / ".kfn" / "kubeconfig"))
KUBECTL = os.environ.get("KUBECTL", str(pathlib.Path.home() / ".cache" / "kfn" / "bin" / "kubectl"))


def kubectl(*args: str, input: str | None = None) -> str:
    result = subprocess.run(
        [KUBECTL, f"--kubeconfig={KUBECONFIG}", *args],
        capture_output=True,
        text=True,
        input=input,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def function(version: int) -> str:
    code = f"def handler(event, context):\n    return {{'version': {version}}}\n"
    return json.dumps(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "bench"},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "scale": {"minReplicas": 1},
                "source": {"inline": {"files": [{"name": "app.py", "content": code}]}},
            },
        }
    )


def prebuilt(image: str) -> str:
    return json.dumps(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "prebuilt"},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "scale": {"minReplicas": 1},
                "source": {"image": image},
            },
        }
    )


def baseline_trial(ns: str, ip: str, image: str, version: int) -> float:
    """Apply a prebuilt image's change; seconds until the new version answers."""
    t0 = time.monotonic()
    kubectl("-n", ns, "apply", "-f", "-", input=prebuilt(image))
    wait(
        "the prebuilt version", lambda: invoke(ip) == {"version": version}, timeout=120, every=0.05
    )
    return time.monotonic() - t0


def invoke(ip: str) -> Any:
    request = urllib.request.Request(f"http://{ip}/_kfn/invoke", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310 - http only
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def status(ns: str) -> dict[str, Any]:
    fn: dict[str, Any] = json.loads(kubectl("-n", ns, "get", "function", "bench", "-o", "json"))
    return dict(fn.get("status", {}))


def wait(what: str, probe: Any, timeout: float, every: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(what)


def _ready(ns: str, name: str) -> bool:
    fn: dict[str, Any] = json.loads(kubectl("-n", ns, "get", "function", name, "-o", "json"))
    conditions = fn.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def builder_result(ns: str, image: str) -> dict[str, Any]:
    pods = json.loads(
        kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component=build", "-o", "json")
    )
    for pod in pods["items"]:
        for cs in pod.get("status", {}).get("containerStatuses", []):
            message = (cs.get("state", {}).get("terminated") or {}).get("message") or ""
            try:
                doc = json.loads(message)
            except ValueError:
                continue
            if doc.get("image") == image:
                return dict(doc)
    return {}


def trial(ns: str, ip: str, version: int) -> dict[str, float]:
    before = status(ns).get("image")
    answered: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if invoke(ip) == {"version": version}:
                answered["t"] = time.monotonic()
                return
            time.sleep(0.05)

    t0 = time.monotonic()
    kubectl("-n", ns, "apply", "-f", "-", input=function(version))
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    image = wait(
        "the new image",
        lambda: (s := status(ns).get("image")) != before and s,
        timeout=180,
        every=0.1,
    )
    t_built = time.monotonic()
    thread.join(120)
    stop.set()
    if "t" not in answered:
        raise TimeoutError(f"version {version} never answered")
    result = builder_result(ns, image)
    seconds = result.get("seconds", {})
    return {
        "total": answered["t"] - t0,
        "build": t_built - t0,
        "builder": float(seconds.get("total", float("nan"))),
        "push": float(seconds.get("push", float("nan"))),
        "rollout": answered["t"] - t_built,
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    ns = f"bench-build-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    try:
        kubectl("-n", ns, "apply", "-f", "-", input=function(0))
        wait("the first version", lambda: status(ns).get("readyReplicas"), timeout=300, every=0.5)
        ip = json.loads(kubectl("-n", ns, "get", "service", "bench", "-o", "json"))["spec"][
            "clusterIP"
        ]
        wait("the first answer", lambda: invoke(ip) == {"version": 0}, timeout=60, every=0.2)
        images = [
            fnimage.push_python_function(
                "bench/prebuilt",
                f"v{v}",
                {"app.py": f"def handler(event, context):\n    return {{'version': {v}}}\n"},
            )
            for v in (100, 101)
        ]
        kubectl("-n", ns, "apply", "-f", "-", input=prebuilt(images[0]))
        wait("the prebuilt function", lambda: _ready(ns, "prebuilt"), timeout=120, every=0.5)
        base_ip = json.loads(kubectl("-n", ns, "get", "service", "prebuilt", "-o", "json"))["spec"][
            "clusterIP"
        ]
        rows = []
        baseline: list[float] = []
        for version in range(1, args.trials + 1):
            row = trial(ns, ip, version)
            rows.append(row)
            print(
                f"trial {version:2d}: total {row['total']:.2f}s = build {row['build']:.2f}s "
                f"(builder {row['builder']:.2f}s, push {row['push']:.3f}s) "
                f"+ rollout {row['rollout']:.2f}s",
                flush=True,
            )
            time.sleep(1)
            which = version % 2
            baseline.append(baseline_trial(ns, base_ip, images[which], 100 + which))
            print(f"          baseline (no build): {baseline[-1]:.2f}s", flush=True)
            time.sleep(1)
        print()
        print(f"{'phase':<8} {'p50':>7} {'p90':>7} {'min':>7} {'max':>7} {'mean':>7}")
        for key in ("total", "build", "builder", "push", "rollout"):
            values = [r[key] for r in rows]
            print(
                f"{key:<8} {pct(values, 0.5):7.2f} {pct(values, 0.9):7.2f} {min(values):7.2f} "
                f"{max(values):7.2f} {statistics.fmean(values):7.2f}"
            )
        print(
            f"{'baseline':<8} {pct(baseline, 0.5):7.2f} {pct(baseline, 0.9):7.2f} "
            f"{min(baseline):7.2f} {max(baseline):7.2f} {statistics.fmean(baseline):7.2f}"
        )
        target = pct([r["total"] for r in rows], 0.5)
        ratio = target / pct(baseline, 0.5)
        print(
            f"\np50 total {target:.2f}s, {ratio:.2f}x the same change without a build "
            f"(target ≤ 10 s): {'met' if target <= 10 else 'MISSED'}"
        )
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
