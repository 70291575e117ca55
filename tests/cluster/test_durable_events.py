"""Event invocations stored in JetStream survive the activators and a deleted Function.

kfn is installed with ``activator.events.store=jetstream`` on the node's NATS
(``hack/cluster/kfncluster/install.py``). The functions report each event they run to a
sink in the test process, on the node's address (pods reach it as they reach the
brokers): the request id of every run, so the test counts what arrived and what arrived
twice. The sink's address travels in the event.
"""

from __future__ import annotations

import asyncio
import collections
import http.server
import json
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage, install
from tests.cluster import httpload
from tests.cluster.invoking import (
    activator_metric,
    activator_pods,
    deploy,
    invoke_address,
    invoke_event,
    known_to_every_activator,
)
from tests.cluster.kubeutil import NODE, kubectl, kubectl_json, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

HANDLER = """\
import json, time, urllib.request


def handler(event, context):
    time.sleep(float(event.get("sleep", 0)))
    body = json.dumps({"id": context.aws_request_id, "fn": event["fn"]}).encode()
    request = urllib.request.Request(
        event["sink"], data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=10).read()
    return {"ok": True}
"""

EVENTS = 1000


class Sink(http.server.ThreadingHTTPServer):
    """Counts the request ids the functions report, per function."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((NODE, 0), _Report)
        self.lock = threading.Lock()
        self.runs: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )

    @property
    def url(self) -> str:
        return f"http://{NODE}:{self.server_address[1]}/"

    def seen(self, function: str) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(self.runs[function])


class _Report(http.server.BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:
        report = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with self.server.lock:
            self.server.runs[report["fn"]][report["id"]] += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    server = Sink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/durable-events", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("events") as name:
        yield name


@pytest.fixture(scope="module")
def activator(kfn: str) -> tuple[str, int]:
    deployment = kubectl_json("-n", kfn, "get", "deployment", "kfn-activator")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--events-store=jetstream" in args, (
        "kfn is installed with the memory event store: reinstall it (make up) so that "
        f"activator.events.store=jetstream, as install.py sets it; args: {args}"
    )
    return invoke_address(kfn)


async def submit(
    activator: tuple[str, int], namespace: str, name: str, count: int, event: dict[str, Any]
) -> list[httpload.Response]:
    """``count`` Event invocations, 50 at a time."""
    limit = asyncio.Semaphore(50)

    async def one() -> httpload.Response:
        async with limit:
            return await invoke_event(activator, namespace, name, event)

    return list(await asyncio.gather(*(one() for _ in range(count))))


def accepted_ids(responses: list[httpload.Response]) -> set[str]:
    statuses = collections.Counter(r.status for r in responses)
    assert statuses == {202: len(responses)}, statuses
    ids = {r.json()["requestId"] for r in responses}
    assert len(ids) == len(responses)
    return ids


def kill_every_activator() -> list[str]:
    """SIGKILLs every activator at once (a forced delete with no grace: no drain, no acks);
    the Deployment starts new ones."""
    names = sorted(p["metadata"]["name"] for p in activator_pods())
    kubectl(
        "-n", install.NAMESPACE, "delete", "pod", *names,
        "--grace-period=0", "--force", "--wait=false",
    )  # fmt: skip
    return names


def test_a_thousand_events_reach_their_function_though_every_activator_is_killed_mid_delivery(
    namespace: str, image: str, activator: tuple[str, int], sink: Sink
) -> None:
    deploy(
        namespace, "durable", image,
        concurrency=4, scale={"maxReplicas": 3, "idleTimeout": "60s"},
    )  # fmt: skip
    known_to_every_activator(activator, namespace, "durable")
    event = {"sink": sink.url, "fn": "durable", "sleep": 0.3}
    started = time.monotonic()
    accepted = accepted_ids(asyncio.run(submit(activator, namespace, "durable", EVENTS, event)))
    print(f"{EVENTS} events accepted in {time.monotonic() - started:.1f}s")

    # Mid-delivery: some have run, most are still in the stream or in the activators' hands.
    wait_for("the first events to run", lambda: len(sink.seen("durable")) >= 50, timeout=120)
    before = len(sink.seen("durable"))
    killed = kill_every_activator()
    print(f"killed {killed} with {before} of {EVENTS} events run")
    assert before < EVENTS * 0.8, "delivery was nearly over before the kill; nothing was shown"

    def everything_ran() -> bool:
        return set(sink.seen("durable")) >= accepted

    # Held events come back after the stream's 30 s ack wait, to the new activators.
    wait_for("every accepted event to run", everything_ran, timeout=300, every=2)
    runs = sink.seen("durable")
    duplicates = {rid: n for rid, n in runs.items() if n > 1}
    print(
        f"all {EVENTS} events ran {sum(runs.values())} times in "
        f"{time.monotonic() - started:.1f}s: {len(duplicates)} ran more than once "
        f"(at least once is the promise); the new activators counted "
        f"{activator_metric('kfn_activator_events_redelivered_total'):.0f} redeliveries"
    )
    assert set(runs) == accepted  # nothing the test did not send


def test_a_function_deleted_mid_delivery_leaves_another_functions_events_flowing(
    namespace: str, image: str, activator: tuple[str, int], sink: Sink
) -> None:
    # "doomed" is slow and small: most of its events still wait when it is deleted.
    deploy(namespace, "doomed", image, concurrency=1, scale={"maxReplicas": 1})
    deploy(namespace, "steady", image, concurrency=4, scale={"maxReplicas": 2})
    for name in ("doomed", "steady"):
        known_to_every_activator(activator, namespace, name)
    doomed_event = {"sink": sink.url, "fn": "doomed", "sleep": 1.0}
    doomed = accepted_ids(asyncio.run(submit(activator, namespace, "doomed", 200, doomed_event)))
    wait_for("doomed's first events to run", lambda: len(sink.seen("doomed")) >= 3, timeout=120)
    kubectl("-n", namespace, "delete", "function", "doomed", "--wait=false")
    wait_for(
        "doomed to be gone",
        lambda: not kubectl("-n", namespace, "get", "function", "doomed", check=False).strip(),
        timeout=60,
    )

    # The shared delivery workers survived: another function's later events all run.
    steady_event = {"sink": sink.url, "fn": "steady", "sleep": 0.05}
    started = time.monotonic()
    steady = accepted_ids(asyncio.run(submit(activator, namespace, "steady", 300, steady_event)))
    wait_for(
        "every event of steady to run",
        lambda: set(sink.seen("steady")) >= steady,
        timeout=120,
        every=1,
    )
    print(f"steady's 300 events ran within {time.monotonic() - started:.1f}s of the deletion")

    # doomed's events end in the on-failure destination as ResourceNotFound, counted. One
    # in flight when its pod went away is a function error first (retried after 60 s).
    def given_up() -> float:
        return activator_metric(
            "kfn_function_async_events_dropped_total",
            namespace=namespace,
            function="doomed",
            reason="ResourceNotFound",
        )

    def all_ended() -> bool:
        return len(set(sink.seen("doomed")) & doomed) + given_up() >= len(doomed)

    wait_for("doomed's events to end", all_ended, timeout=240, every=2)
    print(
        f"doomed: {len(set(sink.seen('doomed')))} of 200 ran before its deletion, "
        f"{given_up():.0f} ended as ResourceNotFound"
    )
    assert given_up() > 0


def test_a_backlog_larger_than_every_activators_window_leaves_another_functions_events_flowing(
    namespace: str, image: str, activator: tuple[str, int], sink: Sink
) -> None:
    # 3,000 slow events, more than the two activators' windows (1,024 each) together: with
    # one consumer for all functions the later function's events would wait behind them.
    deploy(namespace, "backlog", image, concurrency=1, scale={"maxReplicas": 1})
    deploy(namespace, "prompt", image, concurrency=4, scale={"maxReplicas": 1})
    for name in ("backlog", "prompt"):
        known_to_every_activator(activator, namespace, name)
    backlog_event = {"sink": sink.url, "fn": "backlog", "sleep": 2.0}
    accepted_ids(asyncio.run(submit(activator, namespace, "backlog", 3000, backlog_event)))

    prompt_event = {"sink": sink.url, "fn": "prompt", "sleep": 0}
    started = time.monotonic()
    prompt = accepted_ids(asyncio.run(submit(activator, namespace, "prompt", 20, prompt_event)))
    wait_for("every event of prompt to run", lambda: set(sink.seen("prompt")) >= prompt, 60, 0.5)
    ran_behind = len(sink.seen("backlog"))
    print(
        f"prompt's 20 events, stored behind 3,000 of backlog, all ran within "
        f"{time.monotonic() - started:.1f}s (backlog had run {ran_behind})"
    )
    assert ran_behind < 100, "the backlog was nearly done: the test showed nothing"
    # Its events end as ResourceNotFound rather than holding the stream for later tests.
    kubectl("-n", namespace, "delete", "function", "backlog", "--wait=false")
