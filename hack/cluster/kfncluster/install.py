"""``make up``: the cluster, the local Gateway, kfn installed with Helm, and the example web
backend answering.

Each step prints its progress; a failure names the component and what to read.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

from kfncluster import (
    build,
    cluster,
    config,
    gateway,
    gatewayinfra,
    kfnimage,
    monitoring,
    registry,
    runtimeimages,
)

REPO = pathlib.Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "kfn"
NAMESPACE = "kfn-system"
RELEASE = "kfn"
EXAMPLE = REPO / "examples" / "hello"


def _helm(paths: config.Paths, *args: str) -> str:
    helm = build.binaries(paths)["helm"]
    result = subprocess.run(
        [str(helm), f"--kubeconfig={paths.admin_kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:2])}: {result.stderr.strip()}")
    return result.stdout


def sync_chart_crds() -> None:
    """The chart ships the CRDs generated into crds/ (the one source)."""
    target = CHART / "crds"
    target.mkdir(exist_ok=True)
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        shutil.copy(crd, target / crd.name)


VALUES_LOCAL = REPO / "hack" / "cluster" / "values-local.yaml"
ROBOT_KEY_SECRET = "kfn-registry-robot-key"  # noqa: S105 - a Secret's name


def ensure_robot_key_secret(paths: config.Paths, namespace: str) -> None:
    """The robot key the token service holds, as the Secret the operator reads it from."""
    cluster.kubectl(paths, "create", "namespace", namespace, check=False)
    secret = cluster.kubectl(
        paths, "create", "secret", "generic", ROBOT_KEY_SECRET, f"--namespace={namespace}",
        f"--from-file=robot-key={registry.robot_key_file(paths)}",
        "--dry-run=client", "-o", "json",
    )  # fmt: skip
    cluster.kubectl(paths, "apply", "-f", "-", input=secret)


def local_values(paths: config.Paths, image: str) -> list[str]:
    """helm arguments installing kfn on the local cluster from ``image`` (``repo@digest``),
    with the runtime images made from this tree and the cluster CA."""
    repository, digest = image.split("@", 1)
    registry_host, _, repo_path = repository.partition("/")
    runtimes = runtimeimages.push_all(paths)
    return [
        "--values", str(VALUES_LOCAL),
        "--set", f"image.registry={registry_host}",
        "--set", f"image.repository={repo_path}",
        "--set", f"image.digest={digest}",
        # One value per runtime (python3.13 → python313).
        *(a for r, ref in runtimes.items()
          for a in ("--set", f"builder.runtimeImages.{r.replace('.', '')}={ref}")),
        "--set-file", f"registry.caBundle={registry.ca_file(paths)}",
        # Event invocations are stored in the node's JetStream, so that they survive the
        # activators (tests/cluster/test_durable_events.py kills them all).
        "--set", "activator.events.store=jetstream",
        "--set", f"activator.events.nats.url={config.NATS_URL}",
        # JetStream reserves a stream's maximum in its file store: a quarter of the node
        # NATS's 1 GB leaves room for the stream tests' own streams.
        "--set", f"activator.events.maxBytes={EVENTS_MAX_BYTES}",
    ]  # fmt: skip


#: Bytes the local cluster's event stream may hold (the chart's default is 1 GiB).
EVENTS_MAX_BYTES = 256 * 1024 * 1024


def install_kfn(paths: config.Paths, image: str) -> None:
    """Helm-installs kfn from ``image``, with the runtime images made from this tree."""
    sync_chart_crds()
    ensure_robot_key_secret(paths, NAMESPACE)
    _helm(
        paths,
        "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", NAMESPACE, "--create-namespace",
        *local_values(paths, image),
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    # CRDs in a chart's crds/ are installed once and never upgraded by Helm.
    for crd in sorted((CHART / "crds").glob("*.yaml")):
        cluster.kubectl(paths, "apply", "--server-side", "--force-conflicts", "-f", str(crd))


def run_example(paths: config.Paths) -> str:
    """Applies the example (built from a ConfigMap), waits for Ready, calls it from zero through
    the activator, then from this host over HTTPS on its Function URL, through the Gateway."""
    configmap = cluster.kubectl(
        paths, "create", "configmap", "hello-code", "--namespace=default",
        f"--from-file={EXAMPLE / 'handler.py'}", "--dry-run=client", "-o", "json",
    )  # fmt: skip
    cluster.kubectl(paths, "apply", "-f", "-", input=configmap)
    cluster.kubectl(paths, "apply", "-f", str(EXAMPLE / "function.yaml"))
    cluster.kubectl(paths, "wait", "--for=condition=Ready", "function/hello", "--timeout=300s")
    service = json.loads(
        cluster.kubectl(paths, "-n", NAMESPACE, "get", "service", "kfn-activator", "-o", "json")
    )
    url = f"http://{service['spec']['clusterIP']}/hello?name=kfn"
    fn = json.loads(cluster.kubectl(paths, "get", "function", "hello", "-o", "json"))
    pods = fn.get("status", {}).get("readyReplicas", 0)
    how = "a cold start from zero pods" if pods == 0 else f"{pods} pod(s) running"
    status, body, took = _retrying(lambda: _get(url, None))
    lines = [f"GET /hello?name=kfn through the activator → {status} {body} ({took:.2f}s, {how})"]
    cluster.kubectl(paths, "wait", "--for=condition=Exposed", "function/hello", "--timeout=120s")
    fn = json.loads(cluster.kubectl(paths, "get", "function", "hello", "-o", "json"))
    function_url = fn["status"]["functionUrl"]
    host = urllib.parse.urlsplit(function_url).hostname or ""
    status, body, took = _retrying(lambda: _get(function_url + "hello?name=kfn", host))
    lines.append(
        f"GET {function_url}hello?name=kfn from this host over HTTPS, through the Gateway → "
        f"{status} {body} ({took:.2f}s)"
    )
    curl = " ".join(gateway.curl_args(host))
    lines.append(f"Call it yourself: curl {curl} '{function_url}hello?name=you'")
    return "\n".join(lines)


def _get(url: str, host: str | None) -> tuple[int, str, float]:
    """One GET: in-cluster (``host`` None), or to the Gateway's node port for ``host`` over
    HTTPS, the certificate verified against the local CA (``curl --resolve``'s way)."""
    t0 = time.monotonic()
    if host is None:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - http:// to the activator
            return resp.status, resp.read().decode(), time.monotonic() - t0
    parts = urllib.parse.urlsplit(url)
    conn = gateway.connection(host, parts.port or 443)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}", headers={"Host": parts.netloc})
        resp = conn.getresponse()
        if resp.status in (404, 503):  # the route has not reached Envoy or the activator yet
            raise OSError(f"{resp.status} from {url}")
        return resp.status, resp.read().decode(), time.monotonic() - t0
    finally:
        conn.close()


def _retrying(call: Callable[[], tuple[int, str, float]]) -> tuple[int, str, float]:
    """The activator and the Gateway learn a new route within moments of it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return call()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def up() -> int:
    paths = config.Paths()
    code = cluster.up(paths)
    if code != 0:
        return code
    steps = cluster.Progress(5)
    try:
        # Before kfn: its chart finds the Gateway API and the Gateway to attach routes to.
        with steps("the edge: Envoy Gateway, cert-manager, Gateway kfn, Contour") as note:
            gatewayinfra.install(paths, lambda *a, **kw: cluster.kubectl(paths, *a, **kw), note)
        # Before kfn too: its chart makes ServiceMonitors when monitoring.coreos.com/v1 is served.
        with steps(
            f"monitoring: Prometheus Operator and Prometheus in {monitoring.NAMESPACE}"
        ) as note:
            prometheus = monitoring.install(
                paths, lambda *a, **kw: cluster.kubectl(paths, *a, **kw), note
            )
        with steps("build and push the kfn image (operator/Dockerfile)") as note:
            image = kfnimage.build(paths)
            note(image.rsplit("/", 1)[1])
        with steps(f"helm upgrade --install {RELEASE} charts/kfn -n {NAMESPACE}") as note:
            install_kfn(paths, image)
            note("operator running")
        with steps("example web backend (examples/hello)") as note:
            answer = run_example(paths)
            note("Ready")
    except (RuntimeError, OSError) as exc:
        print(f"\nkfn up failed: {exc}")
        print(f"Operator logs: kubectl -n {NAMESPACE} logs deploy/{RELEASE}-operator")
        return 1
    print(f"\n{answer}")
    print(f"Prometheus: {prometheus}")
    print(f"kfn is up in {steps.elapsed():.1f}s. Try: kubectl get fn")
    return 0


def monitoring_up() -> int:
    """The monitoring add-on alone, on the cluster already running (``make up`` installs it
    with the rest)."""
    paths = config.Paths()
    if not cluster.running(paths):
        print("kfn monitoring: the cluster is not running; bring it up first (make cluster)")
        return 1
    steps = cluster.Progress(1)
    try:
        with steps(
            f"monitoring: Prometheus Operator and Prometheus in {monitoring.NAMESPACE}"
        ) as note:
            reach = monitoring.install(
                paths, lambda *a, **kw: cluster.kubectl(paths, *a, **kw), note
            )
    except (RuntimeError, OSError) as exc:
        print(f"\nkfn monitoring failed: {exc}")
        return 1
    print(f"Prometheus: {reach}")
    return 0
