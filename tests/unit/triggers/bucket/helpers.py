"""A worker wired to recorders instead of the activator and the API server."""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.triggers import delivery
from kfn.triggers.bucket import dispatch, poll, worker

UID = "3f1d8e0a-7c55-4a3e-9b0e-2f4c6a8d1e22"


def trigger(name: str = "thumbs", **bucket: Any) -> dict[str, Any]:
    spec = {"endpoint": "http://store:7070", "bucket": "bkt", "events": ["s3:ObjectCreated:*"]}
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "media", "uid": f"{UID}-{name}", "generation": 1},
        "spec": {"functionRef": {"name": "resize"}, "bucket": spec | bucket},
    }


@dataclasses.dataclass
class Delivered:
    target: delivery.Target
    payload: dict[str, Any]
    request_id: str


class Recorder:
    """Stands in for the asynchronous deliverer: records events; ``handle`` decides, per
    event, whether it ended (False: the worker stopped first)."""

    def __init__(self, handle: Callable[[int], bool] | None = None) -> None:
        self.delivered: list[Delivered] = []
        self.handle = handle or (lambda _: True)
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(
        self,
        target: delivery.Target,
        spec: trigger_api.AsyncDelivery,
        payload: bytes,
        *,
        request_id: str,
        first_seen: datetime.datetime,
        progress: delivery.Progress | None,
    ) -> delivery.Result:
        del spec, first_seen, progress
        self.gate.wait(10)
        with self.lock:
            index = len(self.delivered)
            handled = self.handle(index)
            if handled:
                self.delivered.append(Delivered(target, json.loads(payload), request_id))
        return delivery.Result(handled, handled, 1)

    def keys(self) -> list[tuple[str, str]]:
        return [
            (d.payload["Records"][0]["eventName"], d.payload["Records"][0]["s3"]["object"]["key"])
            for d in self.delivered
        ]


class MemorySnapshots(poll.SnapshotStore):
    """Keeps the ConfigMaps in memory, in their persisted form."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0

    def load(self, namespace: str, trigger: str, *, uid: str, source: str) -> poll.Snapshot | None:
        obj = self.objects.get((namespace, trigger))
        return poll.snapshot_of(obj, uid=uid, source=source)

    def save(
        self, namespace: str, trigger: str, *, uid: str, source: str, snapshot: Mapping[str, str]
    ) -> None:
        self.writes += 1
        self.objects[(namespace, trigger)] = poll.configmap(
            namespace=namespace, trigger=trigger, uid=uid, source=source, snapshot=snapshot
        )


def no_secret(namespace: str, ref: meta.LocalObjectReference | None) -> None:
    del namespace, ref


def make_worker(
    recorder: dispatch.Deliver, snapshots: MemorySnapshots | None = None, **kwargs: Any
) -> worker.Worker:
    return worker.Worker(
        deliver=recorder,
        public_url="http://kfn-bucket.kfn-system.svc",
        snapshots=snapshots or MemorySnapshots(),
        read_secret=kwargs.pop("read_secret", no_secret),
        threads=8,
        **kwargs,
    )
