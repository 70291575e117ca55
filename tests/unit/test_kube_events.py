"""``kfn.kube.create_event`` and ``kfn.kube.patch_status`` against the loopback API
(:mod:`tests.unit.operator.kubeapi`): what the autoscaler's rollouts write."""

from __future__ import annotations

import datetime

from kfn import kube
from tests.unit.operator import kubeapi

EVENTS = "/api/v1/namespaces/team/events"
FUNCTIONS = "/apis/kfn.dev/v1alpha1/namespaces/team/functions"
HELLO = {
    "apiVersion": "kfn.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "hello", "namespace": "team", "uid": "u-1", "resourceVersion": "7"},
}


def test_an_event_names_its_object_reason_message_type_component_and_time(
    api: kubeapi.KubeApi,
) -> None:
    at = datetime.datetime(2026, 12, 5, 3, 30, tzinfo=datetime.UTC)
    kube.create_event(
        HELLO,
        reason="RolledBack",
        message="version 3 failed 30.0 %",
        warning=True,
        component="kfn-autoscaler",
        now=at,
    )
    (name,) = api.names(EVENTS)
    assert name.startswith("hello.")
    event = api.get(EVENTS, name)
    assert event is not None
    assert event["involvedObject"] == {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "namespace": "team",
        "name": "hello",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert (event["reason"], event["message"], event["type"]) == (
        "RolledBack",
        "version 3 failed 30.0 %",
        "Warning",
    )
    assert event["source"] == {"component": "kfn-autoscaler"}
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-12-05T03:30:00Z"
    assert event["count"] == 1


def test_each_event_is_a_new_object_and_a_long_message_is_cut_to_what_the_api_keeps(
    api: kubeapi.KubeApi,
) -> None:
    for _ in range(2):
        kube.create_event(HELLO, reason="Stepped", message="x" * 5000, component="c")
    names = api.names(EVENTS)
    assert len(names) == 2
    for name in names:
        event = api.get(EVENTS, name)
        assert event is not None
        assert event["type"] == "Normal"
        assert len(event["message"]) == kube.EVENT_MESSAGE_LIMIT


def test_a_status_patch_names_its_field_manager_when_given_one(api: kubeapi.KubeApi) -> None:
    api.put(FUNCTIONS, {"metadata": {"name": "hello"}, "status": {"image": "i"}})
    written = kube.patch_status(
        "kfn.dev/v1alpha1",
        "Function",
        "team",
        "hello",
        {"aliases": [{"name": "live"}]},
        manager="kfn-autoscaler",
    )
    assert written["status"] == {"image": "i", "aliases": [{"name": "live"}]}
    method, path = api.requests[-1]
    assert (method, path) == ("PATCH", f"{FUNCTIONS}/hello/status?fieldManager=kfn-autoscaler")
