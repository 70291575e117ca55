"""Scale from zero under a load ramp, as a timeline: answers/s, the activator's queue, ready pods.

A Python Function whose handler sleeps ``--work-ms`` (concurrency 1, so one pod answers at
most 1000/work-ms requests a second) starts at zero replicas with no pod left. An open-loop
client then sends synchronous invocations to the activator's invoke Service at a rate that
rises linearly from ``--start-rps`` to ``--peak-rps`` over ``--ramp`` seconds and stays at the
peak for ``--hold`` seconds (each request on its own connection, sent at its scheduled time
whatever the earlier ones are doing). Every ``--interval`` seconds (0.2 by default) a sampler
records, on the same clock:

* **answered/s** — invocations answered 200 in the trailing second;
* **queue depth** — ``kfn_activator_queue_depth`` of the function, summed over the activator
  pods (scraped from each pod's metrics port; both label forms are read: ``function="ns/name"``
  and ``namespace="ns",function="name"``);
* **ready replicas** — the function Deployment's ``status.readyReplicas`` (Kubernetes API).

Prints a line per second of the run and a summary (first answer, peak queue, time to the
most ready replicas, every status code received); ``--plot PATH`` draws the three series over
time as a PNG.

    .venv/bin/python bench/scale_timeline.py --plot docs/img/scale-timeline.png

Expects kfn installed (``make up``). Everything it creates lives in one namespace that is
deleted at the end. All traffic goes to cluster addresses on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import pathlib
import re
import sys
import time
import urllib.request
import uuid

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(REPO / "bench"),
    str(REPO),
    str(REPO / "operator"),
    str(REPO / "hack" / "cluster"),
]

from kubernetes import client, config  # noqa: E402
from tests.cluster import httpload  # noqa: E402
from tests.cluster.invoking import activator_pods, bearer, invoke_path  # noqa: E402
from tests.cluster.kubeutil import (  # noqa: E402
    KUBECONFIG,
    kubectl,
    kubectl_json,
    python_function,
    wait_at_zero,
)

import cold_start  # noqa: E402
import plots  # noqa: E402
from kfncluster import fnimage  # noqa: E402

HANDLER = """\
import os, time
WORK = float(os.environ.get("WORK_MS", "100")) / 1000
def handler(event, context):
    time.sleep(WORK)
    return {"ok": True}
"""

QUEUE_METRIC = "kfn_activator_queue_depth"
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def queue_depth(page: str, namespace: str, name: str) -> float:
    """The function's ``kfn_activator_queue_depth`` in one activator's metrics ``page``.

    Reads the label form ``function="ns/name"`` and ``namespace="ns",function="name"`` alike;
    0 when the activator exports no sample for the function.
    """
    total = 0.0
    for line in page.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] != QUEUE_METRIC:
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        function = labels.get("function")
        if "namespace" in labels:
            ours = labels["namespace"] == namespace and function == name
        else:
            ours = function == f"{namespace}/{name}"
        if ours:
            total += float(match["value"])
    return total


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    answered_per_s: float
    queued: float
    ready: int


def rate_at(t: float, start: float, peak: float, ramp: float) -> float:
    """Requests per second scheduled at ``t`` seconds into the run."""
    return peak if t >= ramp else start + (peak - start) * t / ramp


def send_times(start: float, peak: float, ramp: float, hold: float) -> list[float]:
    """When each request is sent: the ramp's rate integrated, one request per 1/rate."""
    times, t = [], 0.0
    while t < ramp + hold:
        times.append(t)
        t += 1 / max(rate_at(t, start, peak, ramp), 0.1)
    return times


class Run:
    def __init__(
        self, address: tuple[str, int], namespace: str, name: str, apps: client.AppsV1Api
    ) -> None:
        self.address, self.namespace, self.name, self.apps = address, namespace, name, apps
        self.path = invoke_path(namespace, name)
        self.headers = bearer()
        self.metrics_urls = [
            f"http://{pod['status']['podIP']}:9090/metrics"
            for pod in activator_pods()
            if pod["status"].get("podIP")
        ]
        self.t0 = 0.0
        self.answers: list[float] = []  # when each 200 came, seconds into the run
        self.statuses: collections.Counter[str] = collections.Counter()
        self.samples: list[Sample] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def invoke(self) -> None:
        try:
            response = await httpload.request(
                *self.address, "POST", self.path, b"{}", headers=self.headers
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.statuses[type(exc).__name__] += 1
            return
        self.statuses[str(response.status)] += 1
        if response.status == 200:
            self.answers.append(self.now())

    async def drive(self, times: list[float]) -> None:
        tasks = set()
        for at in times:
            delay = at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.invoke())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)

    def _queued(self) -> float:
        total = 0.0
        for url in self.metrics_urls:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - http only
                    total += queue_depth(response.read().decode(), self.namespace, self.name)
            except OSError:
                continue
        return total

    def _ready(self) -> int:
        status = self.apps.read_namespaced_deployment_status(self.name, self.namespace).status
        return int(status.ready_replicas or 0)

    async def sample(self, interval: float, until: asyncio.Event) -> None:
        while not until.is_set():
            started = self.now()
            queued, ready = await asyncio.gather(
                asyncio.to_thread(self._queued), asyncio.to_thread(self._ready)
            )
            at = self.now()
            answered = sum(1 for t in self.answers if at - 1.0 < t <= at)
            self.samples.append(Sample(at, float(answered), queued, ready))
            await asyncio.sleep(max(0.0, interval - (self.now() - started)))


async def measure(run: Run, times: list[float], interval: float, tail: float) -> None:
    run.t0 = time.monotonic()
    stop = asyncio.Event()
    sampler = asyncio.create_task(run.sample(interval, stop))
    await run.drive(times)
    await asyncio.sleep(tail)
    stop.set()
    await sampler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespace", default="kfn-system", help="where kfn runs")
    parser.add_argument("--start-rps", type=float, default=2.0)
    parser.add_argument("--peak-rps", type=float, default=40.0)
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds from start to peak")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds at the peak")
    parser.add_argument("--work-ms", type=int, default=100, help="the handler's sleep")
    parser.add_argument("--max-replicas", type=int, default=6)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--tail", type=float, default=3.0, help="sampled after the last send")
    plots.add_argument(parser)
    args = parser.parse_args()

    api_client = config.new_client_from_config(config_file=str(KUBECONFIG))  # type: ignore[no-untyped-call]
    apps = client.AppsV1Api(api_client)
    service = kubectl_json("-n", args.namespace, "get", "service", "kfn-invoke")
    address = (service["spec"]["clusterIP"], 80)
    image = fnimage.push_python_function("bench/scale-timeline", "v1", {"app.py": HANDLER})
    ns = f"bench-scale-{uuid.uuid4().hex[:6]}"
    name = "ramp"
    kubectl("create", "namespace", ns)
    try:
        python_function(
            ns,
            name,
            image,
            env=[{"name": "WORK_MS", "value": str(args.work_ms)}],
            scale={"maxReplicas": args.max_replicas, "idleTimeout": "5s"},
        )
        cold_start.wait_until(
            lambda: cold_start.function_ready(ns, name), f"{name} Ready", timeout=300
        )
        cold_start.wait_until(
            lambda: cold_start._known(address, invoke_path(ns, name)), "the activators to know it"
        )
        wait_at_zero(ns, name, timeout=180)
        times = send_times(args.start_rps, args.peak_rps, args.ramp, args.hold)
        print(
            f"{len(times)} requests, {args.start_rps:g} -> {args.peak_rps:g}/s over "
            f"{args.ramp:g} s, then {args.hold:g} s at the peak; handler {args.work_ms} ms, "
            f"maxReplicas {args.max_replicas}; sampling every {args.interval:g} s",
            flush=True,
        )
        run = Run(address, ns, name, apps)
        asyncio.run(measure(run, times, args.interval, args.tail))
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    report(run, times, args)
    if args.plot:
        plot(args.plot, run, args)
    return 0


def report(run: Run, times: list[float], args: argparse.Namespace) -> None:
    print("\n   t   sent/s  answered/s  queue  ready")
    for second in range(int(run.samples[-1].at) + 1):
        window = [s for s in run.samples if second <= s.at < second + 1]
        if not window:
            continue
        last = window[-1]
        sent = sum(1 for t in times if second <= t < second + 1)
        print(
            f"{second:4d} {sent:8d} {last.answered_per_s:11.0f} "
            f"{max(s.queued for s in window):6.0f} {last.ready:6d}"
        )
    first = min(run.answers) if run.answers else float("nan")
    peak_queue = max(s.queued for s in run.samples)
    most = max(s.ready for s in run.samples)
    reached = next(s.at for s in run.samples if s.ready == most)
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(run.statuses.items()))
    print(
        f"\n{len(times)} sent; answers by status: {codes}\n"
        f"first answer at {first:.2f} s (cold start under the ramp's first requests); "
        f"peak queue depth {peak_queue:.0f}; most ready replicas {most}, first at "
        f"{reached:.2f} s; {len(run.samples)} samples, every "
        f"{run.samples[-1].at / max(1, len(run.samples) - 1):.3f} s on average"
    )


def plot(path: pathlib.Path, run: Run, args: argparse.Namespace) -> None:
    at = [s.at for s in run.samples]
    marks = {"ramp ends": args.ramp}
    if run.answers:
        marks = {"first answer": min(run.answers), **marks}
    plots.timeline(
        path,
        at,
        [
            ("answered/s\n(trailing 1 s)", [s.answered_per_s for s in run.samples]),
            ("activator\nqueue depth", [s.queued for s in run.samples]),
            ("ready\nreplicas", [float(s.ready) for s in run.samples]),
        ],
        title=(
            f"Scale from zero: {args.start_rps:g} -> {args.peak_rps:g} requests/s over "
            f"{args.ramp:g} s, handler {args.work_ms} ms, concurrency 1"
        ),
        xlabel="seconds since the first request",
        marks=marks,
    )


if __name__ == "__main__":
    sys.exit(main())
