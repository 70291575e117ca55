"""One Trigger failing every second delays no other Trigger's fires (measured, loopback).

The real worker loop, lanes and delivery run against a stand-in activator on 127.0.0.1:
the function of Trigger "bad" fails (500 with a function error, so Lambda's retries hold
each fire for seconds) or answers only after 6 s; Trigger "good" answers at once. Both fire
every second. The Lease is held through :class:`LeaseEndpoint` (in memory). The test
measures when each of good's ticks reaches the activator, against the tick's time.
"""

from __future__ import annotations

import datetime
import http.server
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfn.triggers.cron import overlap, worker
from tests.unit.triggers.test_lease_keeper import LeaseEndpoint

RUN_SECONDS = 8.0
#: Lateness good's ticks may have: the loop's wake-up and a thread start, not bad's fires.
BOUND_SECONDS = 0.5


@pytest.fixture
def arrivals(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[tuple[str, float]]]]:
    mode: str = request.param
    seen: list[tuple[str, float]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            arrived = time.time()
            self.rfile.read(int(self.headers["Content-Length"]))
            if self.path.endswith("/wake"):
                # A wake ahead of a tick (cron.waking) is not a fire: answered, not counted.
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            function = self.path.split("/")[-2]
            seen.append((function, arrived))
            status, body, headers = 200, b"{}", {}
            if function == "bad" and mode == "failing":
                status, headers = 500, {"Kfn-Function-Error": "Unhandled"}
                body = b'{"errorType":"Boom","errorMessage":"no"}'
            elif function == "bad":
                time.sleep(6.0)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def trigger(name: str, created: str) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": {
            "functionRef": {"name": name},
            "cron": {"schedule": "@every 1s", "delivery": {"maxRetries": 2}},
        },
    }


@pytest.mark.parametrize("arrivals", ["failing", "slow"], indirect=True)
def test_a_trigger_failing_every_second_does_not_delay_another_triggers_fires(
    arrivals: tuple[str, list[tuple[str, float]]],
) -> None:
    url, seen = arrivals
    deliverer = worker.Deliverer(url, "local", record=False, retry_delays=(2.0, 2.0))
    cron = worker.Worker(
        namespace="kfn-system", identity="a", deliverer=deliverer, lease_api=LeaseEndpoint()
    )
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cron.schedules.replace([trigger("bad", created), trigger("good", created)])
    cron.lease.try_once()
    assert cron.lease.leading()
    loop = threading.Thread(target=cron.loop)
    started = time.time()
    loop.start()
    time.sleep(RUN_SECONDS)
    most_bad_in_flight = cron.lanes.in_flight("uid-bad")
    cron.stop.set()
    cron.changed.set()
    loop.join(5)
    cron.lanes.join(10)

    good = [arrived for function, arrived in seen if function == "good"]
    bad = [arrived for function, arrived in seen if function == "bad"]
    # Each good tick falls on a whole second (multiples of 1 s since the epoch).
    lateness = [arrived - int(arrived) for arrived in good]
    print(
        f"\n{len(good)} good fires in {RUN_SECONDS:.0f} s: lateness median "
        f"{statistics.median(lateness) * 1000:.1f} ms, max {max(lateness) * 1000:.1f} ms; "
        f"{len(bad)} bad invocations, bad fires in flight at the end {most_bad_in_flight}"
    )
    assert started < good[0] < started + 1.5
    assert len(good) >= RUN_SECONDS - 1
    assert max(lateness) < BOUND_SECONDS
    assert most_bad_in_flight == overlap.MAX_IN_FLIGHT
