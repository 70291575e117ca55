"""The worker's bookkeeping of cron Triggers and its delivery to the activator's invoke API.

Delivery is checked against a real HTTP server on 127.0.0.1 that answers as the activator's
invoke API does (202 for an accepted ``Event``); status writes are off for these tests.
"""

from __future__ import annotations

import datetime
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from kfn.triggers.cron import schedule, worker

UTC = datetime.UTC
UID = "0b7f8a52-0f0c-4f5c-a7a2-6c1d7a3e9b11"
CREATED = datetime.datetime(2026, 1, 1, 10, tzinfo=UTC)


def s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def trigger(cron: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {
            "name": "tick",
            "namespace": "shop",
            "uid": UID,
            "creationTimestamp": "2026-01-01T10:00:00Z",
            "generation": 1,
        },
        "spec": {"functionRef": {"name": "report"}, "cron": cron},
        "status": status or {},
    }


def entry(cron: dict[str, Any], status: dict[str, Any] | None = None) -> worker.Entry:
    made = worker.entry_of(trigger(cron, status), None)
    assert made is not None
    return made


# --- bookkeeping -----------------------------------------------------------------------------


def test_a_new_trigger_counts_ticks_from_its_creation() -> None:
    assert entry({"schedule": "@every 2s"}).done == CREATED


def test_a_trigger_that_fired_before_continues_after_its_last_fire() -> None:
    fired = entry({"schedule": "@every 2s"}, {"lastFireTime": "2026-01-01T11:00:00Z"})
    assert fired.done == datetime.datetime(2026, 1, 1, 11, tzinfo=UTC)


def test_a_stale_status_does_not_move_the_worker_back() -> None:
    first = entry({"schedule": "@every 2s"})
    first.done = CREATED + s(100)
    again = worker.entry_of(
        trigger({"schedule": "@every 2s"}, {"lastFireTime": "2026-01-01T10:00:50Z"}), first
    )
    assert again is not None
    assert again.done == CREATED + s(100)


def test_triggers_of_other_kinds_and_bad_schedules_are_ignored() -> None:
    http_trigger = trigger({"schedule": "@every 2s"})
    http_trigger["spec"] = {"functionRef": {"name": "report"}, "http": {}}
    assert worker.entry_of(http_trigger, None) is None
    assert (
        worker.entry_of(trigger({"schedule": "0 0 31 2 *", "timeZone": "Nowhere/Land"}), None)
        is None
    )


def test_the_table_follows_adds_changes_and_deletes() -> None:
    table = worker.Schedules()
    table.replace([trigger({"schedule": "@every 2s"})])
    assert list(table.entries) == [("shop", "tick")]
    table.change("MODIFIED", trigger({"schedule": "@every 5s"}))
    assert table.entries[("shop", "tick")].schedule == schedule.Interval(5_000_000)
    table.change("DELETED", trigger({"schedule": "@every 5s"}))
    assert table.entries == {}
    assert table.changed.is_set()


def test_a_step_fires_the_due_tick_and_moves_on() -> None:
    tracked = entry({"schedule": "@every 2s"})
    now = CREATED + s(2.004)
    (firing,) = worker.step([tracked], now)
    assert firing.tick == CREATED + s(2)
    assert firing.next == CREATED + s(4)
    assert tracked.done == now
    assert worker.step([tracked], now + s(0.5)) == []
    assert tracked.next == CREATED + s(4)


def test_a_suspended_trigger_fires_nothing_and_does_not_catch_up_on_resume() -> None:
    tracked = entry(
        {
            "schedule": "@every 2s",
            "suspend": True,
            "missedTicks": {"policy": "CatchUp", "deadline": "1h"},
        }
    )
    assert worker.step([tracked], CREATED + s(60)) == []
    resumed = worker.entry_of(
        trigger({"schedule": "@every 2s", "missedTicks": {"policy": "CatchUp", "deadline": "1h"}}),
        tracked,
    )
    assert resumed is not None
    assert [f.tick for f in worker.step([resumed], CREATED + s(62))] == [CREATED + s(62)]


def test_catch_up_after_an_outage_fires_each_missed_tick_within_the_deadline() -> None:
    tracked = entry(
        {"schedule": "@every 2s", "missedTicks": {"policy": "CatchUp", "deadline": "5s"}}
    )
    ticks = [f.tick for f in worker.step([tracked], CREATED + s(31))]
    assert ticks == [CREATED + s(t) for t in (26, 28, 30)]


# --- delivery --------------------------------------------------------------------------------


class Activator(http.server.BaseHTTPRequestHandler):
    """Answers the invoke API as the activator does for Event invocations."""

    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    answers: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, dict(self.headers), body))
        status = type(self).answers.pop(0) if type(self).answers else 202
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def activator() -> Iterator[str]:
    Activator.received = []
    Activator.answers = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Activator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_tick_is_posted_to_the_invoke_api_as_an_event_invocation(activator: str) -> None:
    deliverer = worker.Deliverer(activator, "local", record=False)
    tracked = entry({"schedule": "@every 2s"})
    firing = worker.Firing(tracked, CREATED + s(2), CREATED + s(4))
    assert deliverer.post(firing, threading.Event())
    ((path, headers, body),) = Activator.received
    assert path == "/_kfn/functions/shop/report/invoke"
    assert headers["Kfn-Invocation-Type"] == "Event"
    event = json.loads(body)
    assert event["detail-type"] == "Scheduled Event"
    assert event["time"] == "2026-01-01T10:00:02Z"
    assert headers["Kfn-Request-Id"] == event["id"]


def test_the_users_payload_is_the_body(activator: str) -> None:
    deliverer = worker.Deliverer(activator, "local", record=False)
    tracked = entry({"schedule": "@every 2s", "payload": {"job": "report"}})
    assert deliverer.post(worker.Firing(tracked, CREATED + s(2), CREATED + s(4)), threading.Event())
    assert json.loads(Activator.received[0][2]) == {"job": "report"}


def test_a_busy_activator_is_retried_and_a_refusal_is_not(
    activator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "POST_BACKOFF_SECONDS", 0.01)
    deliverer = worker.Deliverer(activator, "local", record=False)
    firing = worker.Firing(entry({"schedule": "@every 2s"}), CREATED + s(2), CREATED + s(4))
    Activator.answers = [503, 429]
    assert deliverer.post(firing, threading.Event())
    assert len(Activator.received) == 3
    Activator.answers = [404]
    assert not deliverer.post(firing, threading.Event())
    assert len(Activator.received) == 4


def test_only_http_activator_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="http"):
        worker.Deliverer("file:///etc/passwd", "local")
