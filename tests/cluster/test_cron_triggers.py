"""Cron Triggers on the local cluster: a schedule wakes a function at zero and fires on time.

The function prints one line per event it sees, with the time it saw it; the function pods'
logs are the record of invocations. Lateness is measured from the event's ``time`` (the
tick) to the handler, on the same node's clock. Timings are printed; the benchmark of fire
lateness lives in bench/, not here.
"""

from __future__ import annotations

import datetime
import itertools
import json
import pathlib
import re
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage
from tests.cluster.kubeutil import (
    apply,
    kubectl,
    kubectl_json,
    python_function,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)

pytestmark = pytest.mark.cluster

HANDLER = """\
import json, time


def handler(event, context):
    seen = time.time()
    print("CRONSEEN " + json.dumps({"event": event, "seen": seen}), flush=True)
    return {"seen": seen}
"""
SEEN = re.compile(r"CRONSEEN (\{.*\})")
WARM_TICKS = 20
PERIOD = 2.0


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/cron", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-cron", "--timeout=120s")
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-activator", "--timeout=120s")
    with scratch_namespace("cron") as name:
        yield name


def deploy_at_zero(namespace: str, name: str, image: str) -> None:
    python_function(namespace, name, image, scale={"idleTimeout": "5s"})
    wait_at_zero(namespace, name, timeout=120)


def seen_events(namespace: str, name: str) -> list[dict[str, Any]]:
    logs = kubectl(
        "-n", namespace, "logs", "-l", f"kfn.dev/function={name}", "--tail=-1",
        "--prefix=false", "--max-log-requests=10",
    )  # fmt: skip
    return [json.loads(m.group(1)) for m in SEEN.finditer(logs)]


def tick_of(event: dict[str, Any]) -> float:
    text = str(event["time"]).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).timestamp()


def test_an_every_two_seconds_trigger_wakes_the_function_and_fires_each_tick_once_on_time(
    kfn: str, namespace: str, image: str
) -> None:
    deploy_at_zero(namespace, "ticker", image)
    created = time.time()
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "every-2s", "namespace": namespace},
            "spec": {"functionRef": {"name": "ticker"}, "cron": {"schedule": "@every 2s"}},
        }
    )
    wait_for("the first tick to wake the function", lambda: bool(seen_events(namespace, "ticker")),
             timeout=90, every=1)  # fmt: skip
    woke = min(e["seen"] for e in seen_events(namespace, "ticker"))
    print(f"\nfirst event handled {woke - created:.1f}s after the Trigger was created")

    def warm_ticks() -> int:
        return sum(tick_of(e["event"]) > woke for e in seen_events(namespace, "ticker"))

    wait_for(f"{WARM_TICKS} ticks after the wake-up", lambda: warm_ticks() >= WARM_TICKS + 1,
             timeout=WARM_TICKS * PERIOD + 30, every=1)  # fmt: skip
    kubectl("-n", namespace, "delete", "trigger", "every-2s", "--wait=true")
    time.sleep(PERIOD + 1)  # an event accepted just before the delete still arrives
    events = seen_events(namespace, "ticker")

    ids = [e["event"]["id"] for e in events]
    assert len(set(ids)) == len(ids), "a tick was delivered twice"
    ticks = sorted(tick_of(e["event"]) for e in events)
    assert len(set(ticks)) == len(ticks), "one tick fired twice under different ids"
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(ticks)}
    assert gaps == {PERIOD}, f"ticks are not every {PERIOD}s: {sorted(gaps)}"
    for event in events:
        assert event["event"]["detail-type"] == "Scheduled Event"
        assert event["event"]["source"] == "aws.events"
        assert event["event"]["resources"] == [f"arn:kfn:events:local:{namespace}:rule/every-2s"]

    warm = [e["seen"] - tick_of(e["event"]) for e in events if tick_of(e["event"]) > woke]
    assert len(warm) >= WARM_TICKS
    quantiles = statistics.quantiles(warm, n=100)
    print(
        f"{len(events)} events, {len(set(ids))} distinct ticks; warm lateness over "
        f"{len(warm)} ticks: p50 {quantiles[49] * 1000:.0f} ms, p99 {quantiles[98] * 1000:.0f} ms,"
        f" max {max(warm) * 1000:.0f} ms"
    )
    assert max(warm) < 1.0, f"a tick fired more than 1s late: {sorted(warm)[-3:]}"


def test_the_trigger_status_shows_the_last_and_next_fire(
    kfn: str, namespace: str, image: str
) -> None:
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "minutely", "namespace": namespace},
            "spec": {
                "functionRef": {"name": "ticker"},
                "cron": {"schedule": "@every 1m", "timeZone": "Europe/Berlin"},
            },
        }
    )

    def next_fire() -> str:
        status = kubectl_json("-n", namespace, "get", "trigger", "minutely").get("status", {})
        return str(status.get("nextFireTime") or "")

    wait_for("status.nextFireTime", lambda: bool(next_fire()), timeout=30, every=0.5)
    upcoming = datetime.datetime.fromisoformat(next_fire().replace("Z", "+00:00"))
    assert upcoming.second == 0
    assert 0 < upcoming.timestamp() - time.time() <= 61


def test_one_cron_replica_holds_the_lease(kfn: str) -> None:
    lease = kubectl_json("-n", kfn, "get", "lease", "kfn-cron")
    holder = lease["spec"]["holderIdentity"]
    names = [
        p["metadata"]["name"]
        for p in kubectl_json("-n", kfn, "get", "pods", "-l", "app.kubernetes.io/component=cron")[
            "items"
        ]
    ]
    assert len(names) == 2
    assert holder.rsplit("_", 1)[0] in names


def test_a_new_leader_takes_over_without_losing_or_repeating_a_tick(
    kfn: str, namespace: str, image: str
) -> None:
    del image
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "handover", "namespace": namespace},
            "spec": {"functionRef": {"name": "ticker"}, "cron": {"schedule": "@every 2s"}},
        }
    )
    old = leader_pod(kfn)
    wait_for("a few ticks", lambda: len(handover_events(namespace)) >= 3, timeout=60, every=0.5)
    kubectl("-n", kfn, "delete", "pod", old, "--wait=false")
    wait_for("another leader", lambda: leader_pod(kfn) not in ("", old), timeout=30, every=0.5)
    before = len(handover_events(namespace))
    wait_for("ticks from the new leader", lambda: len(handover_events(namespace)) >= before + 3,
             timeout=30, every=0.5)  # fmt: skip
    kubectl("-n", namespace, "delete", "trigger", "handover", "--wait=true")
    time.sleep(PERIOD + 1)
    events = handover_events(namespace)
    ids = [e["event"]["id"] for e in events]
    assert len(set(ids)) == len(ids), "a tick was delivered twice across the hand-over"
    ticks = sorted(tick_of(e["event"]) for e in events)
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(ticks)}
    assert gaps == {PERIOD}, f"a tick was lost across the hand-over: {sorted(gaps)}"
    late = max(e["seen"] - tick_of(e["event"]) for e in events)
    print(f"\n{len(events)} ticks across the leader change, the latest {late:.1f}s late")


def leader_pod(kfn: str) -> str:
    holder = str(kubectl_json("-n", kfn, "get", "lease", "kfn-cron")["spec"]["holderIdentity"])
    return holder.rsplit("_", 1)[0]


def handover_events(namespace: str) -> list[dict[str, Any]]:
    rule = f"arn:kfn:events:local:{namespace}:rule/handover"
    return [
        e
        for e in seen_events(namespace, "ticker")
        if isinstance(e["event"], dict) and e["event"].get("resources") == [rule]
    ]


BROKEN = """\
def handler(event, context):
    raise RuntimeError("the report database is down")
"""
FAILURES = """\
import json


def handler(event, context):
    print("FAILSEEN " + json.dumps(event), flush=True)
    return {}
"""


def test_a_failing_tick_goes_to_the_failure_destination_and_the_trigger_says_why(
    kfn: str, namespace: str
) -> None:
    broken = fnimage.push_python_function("tests/cron-broken", "v1", {"app.py": BROKEN})
    failures = fnimage.push_python_function("tests/cron-failures", "v1", {"app.py": FAILURES})
    deploy_at_zero(namespace, "broken", broken)
    deploy_at_zero(namespace, "failures", failures)
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "doomed", "namespace": namespace},
            "spec": {
                "functionRef": {"name": "broken"},
                "cron": {
                    "schedule": "@every 3s",
                    "delivery": {"maxRetries": 0, "onFailure": {"function": {"name": "failures"}}},
                },
            },
        }
    )

    def records() -> list[dict[str, Any]]:
        logs = kubectl(
            "-n", namespace, "logs", "-l", "kfn.dev/function=failures", "--tail=-1",
            "--prefix=false",
        )  # fmt: skip
        return [json.loads(m.group(1)) for m in re.finditer(r"FAILSEEN (\{.*\})", logs)]

    (record, *_) = wait_for("a failure record", records, timeout=120, every=1)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"]["detail-type"] == "Scheduled Event"
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorMessage"] == "the report database is down"
    assert record["trigger"] == {"namespace": namespace, "name": "doomed", "kind": "cron"}

    def conditions() -> dict[str, dict[str, Any]] | None:
        status = kubectl_json("-n", namespace, "get", "trigger", "doomed").get("status", {})
        found = {c["type"]: c for c in status.get("conditions", [])}
        return found if found.get("Ready", {}).get("reason") == "DeliveryFailing" else None

    found = wait_for("Ready=False with DeliveryFailing", conditions, timeout=30, every=0.5)
    assert found["Ready"]["status"] == "False"
    assert "the report database is down" in found["Delivering"]["message"]
    assert (found["SourceReachable"]["status"], found["SourceReachable"]["reason"]) == (
        "True",
        "Scheduled",
    )
    kubectl("-n", namespace, "delete", "trigger", "doomed", "--wait=true")
