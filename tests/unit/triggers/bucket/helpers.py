"""A worker wired to recorders instead of the activator and the API server, and the
notifications a store pushes to it."""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kfn import kube
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.triggers import delivery, failure
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


def notification(
    key: str = "in/a.jpg",
    name: str = "s3:ObjectCreated:Put",
    *,
    bucket: str = "bkt",
    size: int = 7,
    etag: str = "e1",
    sequencer: str = "01",
) -> dict[str, Any]:
    """A notification as versitygw sends it: ``s3:`` before the event name, the key as it
    was in the request path, the eTag quoted, one record."""
    record = {
        "eventVersion": "2.2",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-03-01T11:59:58Z",
        "eventName": name,
        "userIdentity": {"PrincipalId": "admin"},
        "requestParameters": {"sourceIPAddress": "10.244.0.7"},
        "responseElements": {"x-amz-request-id": "r1", "x-amz-id-2": "h1"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "webhook-global",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"PrincipalId": "admin"},
                "arn": f"arn:aws:s3:::{bucket}/{key}",
            },
            "object": {
                "key": key,
                "size": size,
                "eTag": f'"{etag}"',
                "versionId": None,
                "sequencer": sequencer,
            },
        },
        "glacierEventData": {"restoreEventData": {}},
    }
    return {"Records": [record]}


@dataclasses.dataclass
class Delivered:
    target: failure.Target
    payload: dict[str, Any]
    request_id: str
    first_seen: datetime.datetime
    progress: delivery.Progress | None


class Recorder:
    """Stands in for the asynchronous deliverer: records every call in ``calls`` and the
    events that ended in ``delivered``. ``handle`` decides, per event, whether it ended
    (False: the worker stopped first, ``stopped_at`` in its retries); ``gate`` holds an
    invocation as if the function were still running; ``done`` is set by each call."""

    def __init__(
        self,
        handle: Callable[[int], bool] | None = None,
        *,
        stopped_at: delivery.Progress | None = None,
    ) -> None:
        self.calls: list[Delivered] = []
        self.delivered: list[Delivered] = []
        self.handle = handle or (lambda _: True)
        self.stopped_at = stopped_at
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.done = threading.Event()

    def __call__(
        self,
        target: failure.Target,
        spec: trigger_api.AsyncDelivery,
        payload: bytes,
        *,
        request_id: str,
        first_seen: datetime.datetime,
        progress: delivery.Progress | None,
    ) -> delivery.Result:
        del spec
        self.gate.wait(10)
        call = Delivered(target, json.loads(payload), request_id, first_seen, progress)
        with self.lock:
            self.calls.append(call)
            handled = self.handle(len(self.delivered))
            if handled:
                self.delivered.append(call)
        self.done.set()
        if handled:
            return delivery.Result(True, True, 1)
        return delivery.Result(False, False, 1, progress=self.stopped_at)

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

    def kept(self, namespace: str, trigger: str, *, uid: str) -> bool:
        return poll.owned(self.objects.get((namespace, trigger)), uid=uid)

    def save(
        self, namespace: str, trigger: str, *, uid: str, source: str, snapshot: Mapping[str, str]
    ) -> None:
        self.writes += 1
        old = self.objects.get((namespace, trigger)) or {}
        obj = poll.configmap(
            namespace=namespace, trigger=trigger, uid=uid, source=source, snapshot=snapshot
        )
        # As with server-side apply: the records other writers patched in stay.
        obj["data"] = dict(old.get("data") or {})
        self.objects[(namespace, trigger)] = obj

    def records(self, namespace: str, trigger: str, *, uid: str) -> dict[str, str]:
        return poll.records_of(self.objects.get((namespace, trigger)), uid=uid)

    def record(self, namespace: str, trigger: str, entries: Mapping[str, str]) -> None:
        obj = self.objects.get((namespace, trigger))
        if obj is None:
            raise kube.ApiError(404, "NotFound", f"configmaps {trigger!r} not found")
        obj["data"] = {**obj.get("data", {}), **entries}

    def drop_records(self, namespace: str, trigger: str, keys: Iterable[str]) -> None:
        data = self.objects[(namespace, trigger)].get("data", {})
        for key in keys:
            data.pop(key, None)


def no_secret(namespace: str, ref: meta.LocalObjectReference | None, to: object) -> None:
    del namespace, ref, to


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
