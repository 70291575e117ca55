"""``helm upgrade`` from an earlier kfn under steady HTTP load: how many requests fail.

What a cluster admin does when a new kfn comes out: the release runs an earlier version (its
chart and its image, built from a git revision of this repository), a function serves an HTTP
Trigger at a steady 50 requests per second, and the admin applies the new CRDs and runs
``helm upgrade`` to this tree's chart. Every component rolls (the activators one at a time,
never fewer ready than asked for), the new operator re-applies every function Deployment in
its new shape (so the function's pods roll too), and the load keeps flowing throughout.

It reports the requests sent, answered 2xx, failed (any other status, or no answer) and
retried once by the client after a connection was refused or reset before any byte of an
answer (what a well-behaved HTTP client does when a proxy goes away), and latency percentiles
of the requests before, during and after the upgrade. Target: zero failed requests.

Baseline, same run: the same load for the same time with no upgrade, right before it.

Run after ``make up``: ``.venv/bin/python bench/helm_upgrade.py --from <git revision>``
(default: the last commit before the registry and chart changes). It leaves this tree's kfn
installed, as ``make up`` does, and deletes its namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO / "hack" / "cluster"), str(REPO)]

from tests.cluster import httpload  # noqa: E402
from tests.cluster.kubeutil import kubectl, kubectl_json, python_function, wait_for  # noqa: E402

from kfncluster import build, config, fnimage, install, kfnimage  # noqa: E402

#: The last commit before kfn's chart became portable and its registry authenticated.
BEFORE = "fd2f8ef"
RATE = 50.0
HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"


def helm(*args: str) -> None:
    helm_bin = build.binaries(config.Paths())["helm"]
    result = subprocess.run(
        [str(helm_bin), f"--kubeconfig={REPO / '.kfn' / 'kubeconfig'}", *args],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"helm {' '.join(args[:2])} failed: {result.stderr}")


@contextmanager
def worktree(ref: str) -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory() as tmp:
        tree = pathlib.Path(tmp) / "kfn"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref],
                       check=True, capture_output=True)  # fmt: skip
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)  # fmt: skip


def install_old(tree: pathlib.Path) -> None:
    """The earlier release: its chart, its image, its values."""
    paths = config.Paths()
    image = kfnimage.build(paths, tag="upgrade-from", tree=tree)
    repository, digest = image.split("@", 1)
    helm("uninstall", install.RELEASE, "--namespace", install.NAMESPACE, "--wait")
    helm(
        "install", install.RELEASE, str(tree / "charts" / "kfn"),
        "--namespace", install.NAMESPACE,
        "--set", f"image.repository={repository}", "--set", f"image.digest={digest}",
        "--wait", "--timeout", "300s",
    )  # fmt: skip


def upgrade_to_this_tree() -> None:
    """What an admin does: the new CRDs first, then ``helm upgrade`` to the new chart."""
    paths = config.Paths()
    image = kfnimage.build(paths)
    install.sync_chart_crds()
    for crd in sorted((install.CHART / "crds").glob("*.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    install.ensure_robot_key_secret(paths, install.NAMESPACE)
    helm(
        "upgrade", install.RELEASE, str(install.CHART), "--namespace", install.NAMESPACE,
        *install.local_values(paths, image), "--wait", "--timeout", "600s",
    )  # fmt: skip


async def load(
    ip: str,
    path: str,
    seconds: float,
    results: list[tuple[float, httpload.Response | str]],
    stop: asyncio.Event | None = None,
) -> None:
    """An open loop: a request every 1/RATE s whatever the answers take, for ``seconds`` or
    until ``stop`` is set; then every request sent is waited for."""
    started = time.monotonic()
    tasks = []

    async def one(at: float) -> None:
        try:
            response: httpload.Response | str = await httpload.request(ip, 80, "GET", path)
        except Exception as exc:
            response = f"{type(exc).__name__}: {exc}"
        results.append((at, response))

    n = 0
    while time.monotonic() - started < seconds and not (stop and stop.is_set()):
        at = started + n / RATE
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        tasks.append(asyncio.create_task(one(at - started)))
        n += 1
    await asyncio.gather(*tasks)


def summary(name: str, results: list[tuple[float, httpload.Response | str]]) -> None:
    ok = [r for _, r in results if isinstance(r, httpload.Response) and 200 <= r.status < 300]
    failed = [r for _, r in results if not (isinstance(r, httpload.Response) and r in ok)]
    retried = [r for r in ok if r.retried]
    latencies = sorted(r.seconds * 1000 for r in ok)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    p50 = statistics.median(latencies) if latencies else 0.0
    print(
        f"{name:>9}: sent {len(results):5d}  2xx {len(ok):5d}  failed {len(failed):3d}  "
        f"retried {len(retried):3d}  p50 {p50:6.1f} ms  p99 {pct(0.99):7.1f} ms  "
        f"max {latencies[-1] if latencies else 0:7.1f} ms"
    )
    for failure in failed[:10]:
        print(f"           {failure if isinstance(failure, str) else failure.status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="ref", default=BEFORE, help="the revision upgraded from")
    parser.add_argument("--after", type=float, default=30.0, help="load after the upgrade, s")
    args = parser.parse_args()
    ns = f"bench-upgrade-{uuid.uuid4().hex[:6]}"
    with worktree(args.ref) as tree:
        print(f"installing kfn of {args.ref} ...", flush=True)
        install_old(tree)
    kubectl("create", "namespace", ns)
    try:
        image = fnimage.push_python_function("bench/upgrade", "v1", {"app.py": HANDLER})
        python_function(ns, "web", image, scale={"minReplicas": 1, "maxReplicas": 4})
        kubectl(
            "apply",
            "-f",
            "-",
            input=f"""
apiVersion: kfn.dev/v1alpha1
kind: Trigger
metadata: {{name: web, namespace: {ns}}}
spec: {{functionRef: {{name: web}}, http: {{pathPrefix: /{ns}}}}}
""",
        )
        service = kubectl_json("-n", install.NAMESPACE, "get", "service", "kfn-activator")
        ip, path = service["spec"]["clusterIP"], f"/{ns}/"

        def answers() -> bool:
            return asyncio.run(httpload.request(ip, 80, "GET", path)).status == 200

        wait_for("the function to answer through the old release", answers, timeout=240, every=1)

        baseline: list[tuple[float, httpload.Response | str]] = []
        print(f"baseline: {RATE:.0f} rps for 60 s, no upgrade ...", flush=True)
        asyncio.run(load(ip, path, 60.0, baseline))

        during: list[tuple[float, httpload.Response | str]] = []
        marks: dict[str, float] = {}

        async def scenario() -> None:
            started = time.monotonic()
            stop = asyncio.Event()
            loader = asyncio.create_task(load(ip, path, 10_000.0, during, stop))
            await asyncio.sleep(10)
            marks["upgrade"] = time.monotonic() - started
            await asyncio.to_thread(upgrade_to_this_tree)
            await asyncio.to_thread(
                kubectl, "-n", ns, "rollout", "status", "deployment/web", "--timeout=300s"
            )
            marks["rolled"] = time.monotonic() - started
            await asyncio.sleep(args.after)
            stop.set()
            await loader

        print(f"upgrade: {RATE:.0f} rps, helm upgrade after 10 s ...", flush=True)
        asyncio.run(scenario())
        print(f"\nhelm upgrade from {args.ref} to this tree, {RATE:.0f} requests/s over HTTP:")
        print(f"the upgrade ran from {marks['upgrade']:.0f} s to {marks['rolled']:.0f} s "
              "(every kfn Deployment and the function's own rolled)")  # fmt: skip
        summary("baseline", baseline)
        summary("before", [x for x in during if x[0] < marks["upgrade"]])
        summary("upgrading", [x for x in during if marks["upgrade"] <= x[0] < marks["rolled"]])
        summary("after", [x for x in during if x[0] >= marks["rolled"]])
        summary("all", during)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    return 0


if __name__ == "__main__":
    sys.exit(main())
