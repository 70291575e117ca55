"""The last lines a function's pod leaves when it goes: what is kept, and where."""

from __future__ import annotations

from typing import Any

import pytest

from kfn.api import function
from kfn.api import kept_logs as api_kept_logs
from kfn.resources import kept_logs, objects


def _function() -> function.Function:
    return function.Function.model_validate(
        {
            "metadata": {"name": "hello", "namespace": "team-a", "uid": "u-1"},
            "spec": {
                "runtime": "python3.13",
                "handler": "app.handler",
                "source": {"inline": {"files": [{"name": "app.py", "content": "x = 1\n"}]}},
            },
        }
    )


def _pod(
    *,
    component: str = objects.COMPONENT_FUNCTION,
    deleting: bool = True,
    state: dict[str, Any] | None = None,
    container: str = "function",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "hello-abc",
        "uid": "p-1",
        "labels": {objects.LABEL_FUNCTION: "hello", objects.LABEL_COMPONENT: component},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-05T10:00:00Z"
    return {
        "metadata": meta,
        "status": {"containerStatuses": [{"name": container, "state": state or {"running": {}}}]},
    }


def test_a_tail_keeps_the_last_lines_within_the_line_bound() -> None:
    tail = kept_logs.Tail(max_lines=3, max_bytes=1000)
    for n in range(10):
        tail.add(f"line {n}\n")
    assert tail.lines() == ["line 7", "line 8", "line 9"]
    assert tail.text() == "line 7\nline 8\nline 9\n"


def test_a_tail_keeps_the_last_lines_within_the_byte_bound() -> None:
    tail = kept_logs.Tail(max_lines=100, max_bytes=20)
    for n in range(10):
        tail.add(f"line {n}")  # 6 bytes and a newline each
    assert tail.lines() == ["line 7", "line 8", "line 9"]
    assert len(tail.text().encode()) <= 21


def test_a_line_longer_than_the_byte_bound_keeps_its_end() -> None:
    tail = kept_logs.Tail(max_lines=100, max_bytes=8)
    tail.add("x" * 50 + "the end")
    assert tail.lines() == ["xthe end"]


def test_a_departed_pod_is_kept_last_and_the_oldest_beyond_the_limit_go() -> None:
    data, order = kept_logs.kept({"a": "1\n", "b": "2\n"}, ["a", "b"], "c", "3\n", limit=2)
    assert order == ["b", "c"]
    assert data == {"b": "2\n", "c": "3\n"}


def test_a_pod_kept_twice_moves_to_the_end_with_its_latest_lines() -> None:
    data, order = kept_logs.kept({"a": "1\n", "b": "2\n"}, ["a", "b"], "a", "again\n")
    assert order == ["b", "a"]
    assert data == {"a": "again\n", "b": "2\n"}


def test_keys_the_order_does_not_name_are_the_first_to_go() -> None:
    data, order = kept_logs.kept({"a": "1\n", "z": "?\n"}, ["a"], "c", "3\n", limit=2)
    assert order == ["a", "c"]
    assert set(data) == {"a", "c"}


def test_the_order_is_read_back_from_the_live_config_map() -> None:
    fn = _function()
    data, order = kept_logs.kept({}, [], "hello-abc", "2026-12-05T10:00:00Z hi\n")
    live = kept_logs.config_map(fn, data, order)
    assert kept_logs.order_of(live) == (data, order)
    assert kept_logs.order_of(None) == ({}, [])


def test_the_config_map_is_named_for_the_function_and_goes_with_it() -> None:
    cm = kept_logs.config_map(_function(), {"hello-abc": "x\n"}, ["hello-abc"])
    assert cm["metadata"]["name"] == "kfn-logs.hello" == api_kept_logs.config_map_name("hello")
    assert cm["metadata"]["namespace"] == "team-a"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert cm["metadata"]["labels"][objects.LABEL_COMPONENT] == "logs"
    assert cm["metadata"]["annotations"] == {api_kept_logs.ORDER_ANNOTATION: "hello-abc"}


def test_the_kept_logs_stay_well_below_a_config_maps_size_limit() -> None:
    assert kept_logs.KEPT_PODS * (kept_logs.KEPT_BYTES + 256) < 1024 * 1024 // 2


@pytest.mark.parametrize("component", [objects.COMPONENT_FUNCTION, objects.COMPONENT_VERSION])
def test_a_terminating_function_pod_of_latest_or_a_version_is_kept(component: str) -> None:
    assert kept_logs.keeps(_pod(component=component))
    assert kept_logs.keeps(_pod(state={"terminated": {"exitCode": 0}}))


@pytest.mark.parametrize(
    "pod",
    [
        _pod(deleting=False),
        _pod(component="build"),
        _pod(state={"waiting": {"reason": "ContainerCreating"}}),
        _pod(container="sidecar"),
        {"metadata": {"name": "x", "deletionTimestamp": "2026-12-05T10:00:00Z"}},
    ],
    ids=["running", "a build pod", "never started", "another container", "not a function's"],
)
def test_pods_that_are_not_terminating_function_pods_with_a_log_are_left(
    pod: dict[str, Any],
) -> None:
    assert not kept_logs.keeps(pod)
