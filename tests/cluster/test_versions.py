"""Versions and aliases on a cluster: a weighted split, and a rollout that rolls itself back.

A Function is deployed three times with three images (each a published version); the alias
``live`` first splits 90/10 between versions 1 and 2, then moves to version 3, which fails 30 %
of its invocations, in steps: the autoscaler's rollout controller sends it back to version 2 by
itself. Every invocation goes through the invoke door as ``web:live`` and every answer names
the version that ran.
"""

from __future__ import annotations

import asyncio
import collections
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage
from tests.cluster import httpload
from tests.cluster.invoking import bearer, deploy, invoke_address
from tests.cluster.kubeutil import kubectl, kubectl_json, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

HANDLER = """\
import random

VERSION = {version!r}
FAILURES = {failures!r}


def handler(event, context):
    if random.random() < FAILURES:
        raise RuntimeError(f"version {{VERSION}} failed on purpose")
    return {{"image": VERSION, "version": context.function_version}}
"""

SPLIT_INVOCATIONS = 2000
ADDITIONAL_WEIGHT = 10
IN_FLIGHT = 16


def _image(tag: str, failures: float = 0.0) -> str:
    files = {"app.py": HANDLER.format(version=tag, failures=failures)}
    return fnimage.push_python_function("tests/versions", tag, files)


@pytest.fixture(scope="module")
def images(cluster: pathlib.Path) -> dict[str, str]:
    return {"v1": _image("v1"), "v2": _image("v2"), "v3": _image("v3", failures=0.3)}


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("versions") as ns:
        yield ns


@pytest.fixture(scope="module")
def door(kfn: str) -> tuple[str, int]:
    return invoke_address(kfn)


def _status(ns: str) -> dict[str, Any]:
    return dict(kubectl_json("-n", ns, "get", "function", "web").get("status", {}))


def _deploy_version(ns: str, image: str, number: int, **spec: Any) -> None:
    deploy(ns, "web", image, concurrency=8, **spec)
    wait_for(
        f"version {number} published",
        lambda: _status(ns).get("latestVersion") == number,
        timeout=60,
    )


def _binomial_interval(n: int, p: float, confidence: float) -> tuple[int, int]:
    """The central ``confidence`` interval of Binomial(n, p), from its exact distribution."""
    tail = (1 - confidence) / 2
    cumulative, low, high = 0.0, 0, n
    mass = (1 - p) ** n  # P(K = 0); then P(K = k + 1) = P(K = k) (n - k) p / ((k + 1)(1 - p))
    for k in range(n + 1):
        cumulative += mass
        mass *= (n - k) * p / ((k + 1) * (1 - p))
        if cumulative < tail:
            low = k + 1
        if cumulative >= 1 - tail:
            high = k
            break
    return low, high


async def _invoke(door: tuple[str, int], ns: str, target: str) -> httpload.Response:
    return await httpload.request(
        *door, "POST", f"/_kfn/functions/{ns}/{target}/invoke", b"{}", headers=bearer()
    )


async def _many(door: tuple[str, int], ns: str, target: str, count: int) -> list[httpload.Response]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> httpload.Response:
        async with gate:
            return await _invoke(door, ns, target)

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _executed(response: httpload.Response) -> str:
    return {k.lower(): v for k, v in response.headers.items()}.get("x-amz-executed-version", "")


def _function_error(response: httpload.Response) -> bool:
    headers = {k.lower() for k in response.headers}
    return "x-amz-function-error" in headers or "kfn-function-error" in headers


def _alias_known(door: tuple[str, int], ns: str) -> None:
    """Waits until every activator routes ``web:live`` to version 2 too (one answer from it)."""

    async def seen() -> bool:
        answers = await _many(door, ns, "web:live", 64)
        return all(a.status == 200 for a in answers) and {"1", "2"} <= {
            _executed(a) for a in answers
        }

    wait_for("the alias routed to both versions", lambda: asyncio.run(seen()), timeout=120)


def test_an_alias_splits_its_invocations_by_weight_and_each_answer_names_its_version(
    namespace: str, images: dict[str, str], door: tuple[str, int]
) -> None:
    _deploy_version(namespace, images["v1"], 1)
    split = {"version": 1, "additionalVersion": {"version": 2, "weight": ADDITIONAL_WEIGHT}}
    _deploy_version(namespace, images["v2"], 2, aliases=[{"name": "live", **split}])
    _alias_known(door, namespace)

    answers = asyncio.run(_many(door, namespace, "web:live", SPLIT_INVOCATIONS))

    assert [a.status for a in answers if a.status != 200] == []
    counted = collections.Counter(_executed(a) for a in answers)
    for answer in answers:
        body = answer.json()
        assert body["image"] == {"1": "v1", "2": "v2"}[_executed(answer)]
        assert body["version"] == _executed(answer)
    low, high = _binomial_interval(SPLIT_INVOCATIONS, ADDITIONAL_WEIGHT / 100, 0.99)
    print(f"\n90/10 split over {SPLIT_INVOCATIONS}: {dict(counted)}; 99 % interval [{low}, {high}]")
    assert set(counted) == {"1", "2"}
    assert low <= counted["2"] <= high


def _rollout(ns: str) -> dict[str, Any]:
    for entry in _status(ns).get("aliases") or []:
        if entry.get("name") == "live":
            return dict(entry)
    return {}


def test_a_rollout_of_a_failing_version_rolls_back_by_itself_failing_only_its_own_answers(
    namespace: str, images: dict[str, str], door: tuple[str, int]
) -> None:
    rollout = {"steps": [10, 50], "interval": "30s", "minInvocations": 20}
    _deploy_version(
        namespace, images["v2"], 2, aliases=[{"name": "live", "version": 2, "rollout": rollout}]
    )
    # The controller settles the alias on version 2 first: a rollout moves from a settled version.
    wait_for(
        "the alias settled on version 2",
        lambda: _rollout(namespace).get("routes") == [{"version": 2, "weight": 100}],
        timeout=30,
    )
    _deploy_version(
        namespace, images["v3"], 3, aliases=[{"name": "live", "version": 3, "rollout": rollout}]
    )
    wait_for(
        "the rollout to start",
        lambda: _rollout(namespace).get("rollout", {}).get("to") == 3,
        timeout=30,
    )

    counted: collections.Counter[tuple[str, str]] = collections.Counter()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for answer in asyncio.run(_many(door, namespace, "web:live", 40)):
            ran = _executed(answer)
            if answer.status == 200 and not _function_error(answer):
                counted[(ran, "ok")] += 1
            elif _function_error(answer):
                counted[(ran, "function error")] += 1
            else:
                counted[(ran, f"status {answer.status}")] += 1
        if _rollout(namespace).get("rollout", {}).get("outcome") == "RolledBack":
            break
    state = _rollout(namespace)
    print(f"\nanswers by (version, outcome): {dict(counted)}; alias: {json.dumps(state)}")
    assert state["rollout"]["outcome"] == "RolledBack"
    assert state["routes"] == [{"version": 2, "weight": 100}]
    # The only failures callers saw were version 3's own answers.
    assert {key for key in counted if key[1] != "ok"} <= {("3", "function error")}
    assert counted[("3", "function error")] > 0

    after = asyncio.run(_many(door, namespace, "web:live", 100))
    assert {(_executed(a), a.status) for a in after} == {("2", 200)}

    events = kubectl_json(
        "-n", namespace, "get", "events", "--field-selector",
        "involvedObject.kind=Function,involvedObject.name=web,reason=RolledBack",
    )["items"]  # fmt: skip
    assert events, kubectl("-n", namespace, "get", "events")
    assert "version 3" in events[0]["message"]
    print(f"the Event: {events[0]['message']}")

    # ... and a condition the user sees in kubectl describe, outside Ready
    condition = wait_for(
        "the RolledOut condition",
        lambda: next(
            (c for c in _status(namespace).get("conditions", []) if c["type"] == "RolledOut"),
            None,
        ),
        timeout=30,
    )
    print(f"the condition: {condition}")
    assert (condition["status"], condition["reason"]) == ("False", "RolledBack")
    assert condition["message"].startswith("alias live: ")
    ready = next(c for c in _status(namespace)["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
