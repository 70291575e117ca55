"""Poll mode: find object changes by comparing listings with a persisted snapshot.

The snapshot is ``{key: eTag}`` of every object under the Trigger's filter that has been
handled. Each poll lists the bucket and :func:`diff` compares: a key that is new or whose
eTag changed is an ``ObjectCreated:Put``, a key that is gone an ``ObjectRemoved:Delete``.
The snapshot moves forward only by changes that were handled (delivered, or sent to
onFailure), and it is written (a ConfigMap per Trigger, see :func:`configmap`) after each
batch, so a poller that dies mid-burst leaves the unhandled changes to its successor: they
are found again and sent, at worst a second time for the batch in flight, never lost.

A Trigger's first poll takes the current listing as the baseline and reports nothing for
objects that existed before; so does a Trigger whose source (endpoint, bucket, filter)
changed, since the old snapshot describes another set of objects.

Push Triggers are listed the same way to **catch up** on notifications a store never sent
(stores send each once, versitygw with a 3 s timeout and no retry; a notification that
reached no replica that knew the Trigger is gone too). Every replica records the pushed
changes it takes in hand in the same ConfigMap (``data`` keys under
:data:`RECORD_PREFIX`, one merge patch per flush, see :func:`record_entry`); the catch-up
folds them into the snapshot (:func:`fold`) before comparing, and delivers a change no
record explains only once two listings at least :data:`PUSH_SETTLE` apart found it
(:func:`settled`), so a notification still on its way is not doubled. A replica that
recorded a change and then could neither deliver it nor hand it over takes the record back
(:func:`lost_entry`, under :data:`LOST_PREFIX`), so the catch-up delivers it after all.

Everything here but :class:`SnapshotStore` is pure.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import gzip
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from kfn import kube
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.triggers.bucket import events, s3

logger = logging.getLogger(__name__)

FORMAT: Final = 1
DATA_KEY: Final = "snapshot.json.gz"
SOURCE_ANNOTATION: Final = "kfn.dev/bucket-source"
#: A ConfigMap holds at most 1 MiB; beyond this (compressed) the snapshot cannot be kept.
MAX_SNAPSHOT_BYTES: Final = 900 * 1024
#: ``data`` keys of the snapshot's ConfigMap that record pushed changes.
RECORD_PREFIX: Final = "pushed."
#: ``data`` keys that take a record back: the replica that held the change lost it.
LOST_PREFIX: Final = "lost."
#: How long a Push Trigger's listing must keep showing a change no notification brought
#: before the catch-up delivers it.
PUSH_SETTLE: Final = datetime.timedelta(seconds=10)
#: A Trigger's first listing reports the objects changed since its creation if it comes
#: within this of it (see :func:`baseline`).
NEW_TRIGGER: Final = datetime.timedelta(minutes=5)

Snapshot = dict[str, str]


def configmap_name(trigger: str) -> str:
    """The ConfigMap that keeps a Trigger's snapshot."""
    return f"kfn-bucket-{trigger}"


def source_of(spec: trigger_api.BucketTrigger) -> str:
    """What the snapshot describes; when it changes, the snapshot starts over."""
    object_filter = spec.filter or trigger_api.ObjectFilter()
    identity = [spec.endpoint, spec.bucket, object_filter.prefix or "", object_filter.suffix or ""]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class Change:
    """One object change a listing shows against the snapshot."""

    key: str
    name: str
    etag: str
    size: int = 0


def in_scope(spec: trigger_api.BucketTrigger, key: str) -> bool:
    return events.key_matches(spec.filter, key)


def diff(snapshot: Mapping[str, str], listing: Iterable[s3.ObjectInfo]) -> list[Change]:
    """Changes from ``snapshot`` to ``listing``: creations and updates in key order, then
    removals in key order (the order a reader of the bucket would expect)."""
    seen: set[str] = set()
    created: list[Change] = []
    for item in listing:
        seen.add(item.key)
        if snapshot.get(item.key) != item.etag:
            created.append(Change(item.key, events.CREATED_PUT, item.etag, item.size))
    removed = [
        Change(key, events.REMOVED_DELETE, etag)
        for key, etag in snapshot.items()
        if key not in seen
    ]
    return sorted(created, key=lambda c: c.key) + sorted(removed, key=lambda c: c.key)


def baseline(
    listing: Iterable[s3.ObjectInfo],
    *,
    created: datetime.datetime | None,
    now: datetime.datetime,
    young: datetime.timedelta = NEW_TRIGGER,
) -> Snapshot:
    """A Trigger's first snapshot: the objects its first listing shows, but for those last
    modified after the Trigger was created when that was less than ``young`` ago.

    Those are left out, so :func:`diff` reports them: a change made between the Trigger's
    creation and its first listing is a change the Trigger is for, and a notification of it
    may have gone to a replica that did not know the Trigger yet (or to none). Times are
    compared by the second (``creationTimestamp`` has no finer one), and an object changed
    in the second of the Trigger's creation counts as older, so an object written just
    before the Trigger sends nothing. ``young`` keeps a Trigger whose snapshot was deleted
    long after its creation from reporting its whole history again.
    """
    since = created if created is not None and now - created < young else None
    return {item.key: item.etag for item in listing if not _changed_after(item, since)}


def _changed_after(item: s3.ObjectInfo, since: datetime.datetime | None) -> bool:
    if since is None or item.modified is None:
        return False
    return item.modified.replace(microsecond=0) > since.replace(microsecond=0)


def reported(spec: trigger_api.BucketTrigger, change: Change) -> bool:
    """Whether the Trigger's events select this change (the filter was applied before)."""
    return events.event_selected(spec.events, change.name)


def advance(snapshot: Snapshot, changes: Iterable[Change]) -> Snapshot:
    """The snapshot after ``changes`` were handled."""
    updated = dict(snapshot)
    for change in changes:
        if change.name == events.REMOVED_DELETE:
            updated.pop(change.key, None)
        else:
            updated[change.key] = change.etag
    return updated


def batches(changes: list[Change], size: int) -> list[list[Change]]:
    return [changes[i : i + size] for i in range(0, len(changes), size)]


# --- catching up on Push Triggers ---------------------------------------------------------------


def record_entry(change: events.ObjectEvent) -> tuple[str, str]:
    """The ConfigMap ``data`` entry recording a pushed change.

    Each (key, eTag) and each removal has its own entry, so records from several replicas
    never overwrite one another and the catch-up removes only those it folded.
    """
    removed = change.name.startswith("ObjectRemoved")
    mark = "\0removed" if removed else change.etag
    digest = hashlib.sha256(f"{change.key}\0{mark}".encode()).hexdigest()[:40]
    body = {"key": change.key, "removed": True} if removed else {"key": change.key,
                                                                  "etag": change.etag}  # fmt: skip
    return RECORD_PREFIX + digest, json.dumps(body, separators=(",", ":"))


def lost_entry(change: events.ObjectEvent) -> tuple[str, str]:
    """The ConfigMap ``data`` entry taking back the record of a pushed change that a replica
    could neither deliver nor hand over, so that the catch-up delivers it (:func:`fold`)."""
    key, value = record_entry(change)
    return LOST_PREFIX + key.removeprefix(RECORD_PREFIX), value


def _recorded(value: str) -> tuple[str, str | None] | None:
    """(key, eTag) of a record, eTag None for a removal; None for garbage."""
    try:
        body = json.loads(value)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("key"), str):
        return None
    if body.get("removed") is True:
        return body["key"], None
    etag = body.get("etag")
    return (body["key"], etag) if isinstance(etag, str) else None


def fold(
    snapshot: Mapping[str, str], records: Mapping[str, str], listing: Mapping[str, str]
) -> Snapshot:
    """The snapshot with the recorded pushed changes in it, judged by the current listing.

    A key the listing shows as a recorded creation brought it (or one without an eTag, as
    some stores send) takes the listing's eTag; a key the listing lacks after a recorded
    removal leaves the snapshot. Anything else stays, so :func:`diff` reports what no
    notification explains.

    A lost change (:func:`lost_entry`) is then taken out again, whether its record is
    folded now or was before: a creation the listing still shows leaves the snapshot, a
    removal the listing still lacks puts the key back, so :func:`diff` reports either.
    """
    marks: dict[str, set[str | None]] = {}
    lost: dict[str, set[str | None]] = {}
    for name, value in records.items():
        recorded = _recorded(value)
        if recorded is not None:
            found = lost if name.startswith(LOST_PREFIX) else marks
            found.setdefault(recorded[0], set()).add(recorded[1])
    updated = dict(snapshot)
    for key, seen in marks.items():
        current = listing.get(key)
        if current is None:
            if None in seen:
                updated.pop(key, None)
        elif current in seen or "" in seen:
            updated[key] = current
    for key, seen in lost.items():
        current = listing.get(key)
        if current is None:
            if None in seen and key not in updated:
                updated[key] = ""
        elif (current in seen or "" in seen) and updated.get(key) == current:
            del updated[key]
    return updated


Sighting = tuple[str, str, str]


def settled(
    changes: list[Change],
    seen: Mapping[Sighting, datetime.datetime],
    now: datetime.datetime,
    settle: datetime.timedelta = PUSH_SETTLE,
) -> tuple[list[Change], dict[Sighting, datetime.datetime]]:
    """Of the changes a Push Trigger's listing shows and no record explains, those first
    seen at least ``settle`` ago; and when each change now shown was first seen (the rest
    are forgotten: a record or another change explained them)."""
    sightings: dict[Sighting, datetime.datetime] = {}
    due = []
    for change in changes:
        sighting = (change.key, change.name, change.etag)
        first = seen.get(sighting, now)
        sightings[sighting] = first
        if now - first >= settle:
            due.append(change)
    return due, sightings


# --- the persisted form ------------------------------------------------------------------------


def encode(snapshot: Mapping[str, str]) -> str:
    """gzip + base64 of the JSON snapshot (a ConfigMap's ``binaryData`` value)."""
    body = json.dumps({"format": FORMAT, "objects": dict(snapshot)}, separators=(",", ":"))
    return base64.b64encode(gzip.compress(body.encode(), mtime=0)).decode()


def decode(value: str) -> Snapshot | None:
    """The snapshot, or None when the value is unreadable (then a new baseline is taken)."""
    try:
        data = json.loads(gzip.decompress(base64.b64decode(value)))
    except (ValueError, OSError, EOFError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    objects = data.get("objects")
    if not isinstance(objects, dict):
        return None
    return {str(k): str(v) for k, v in objects.items()}


def configmap(
    *, namespace: str, trigger: str, uid: str, source: str, snapshot: Mapping[str, str]
) -> dict[str, Any]:
    """The ConfigMap holding a snapshot, owned by the Trigger so it goes when it goes."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(trigger),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kfn", "kfn.dev/trigger": trigger},
            "annotations": {SOURCE_ANNOTATION: source},
            "ownerReferences": [
                {
                    "apiVersion": meta.API_VERSION,
                    "kind": trigger_api.KIND,
                    "name": trigger,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "binaryData": {DATA_KEY: encode(snapshot)},
    }


def owned(obj: Mapping[str, Any] | None, *, uid: str) -> bool:
    """Whether a snapshot's ConfigMap is this Trigger's (not one left by a deleted Trigger
    of the same name)."""
    if obj is None:
        return False
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(owner.get("uid") == uid for owner in owners)


def snapshot_of(obj: Mapping[str, Any] | None, *, uid: str, source: str) -> Snapshot | None:
    """The snapshot a ConfigMap holds for this Trigger and source, or None (baseline anew)."""
    if obj is None or not owned(obj, uid=uid):
        return None
    metadata = obj.get("metadata") or {}
    if (metadata.get("annotations") or {}).get(SOURCE_ANNOTATION) != source:
        return None
    value = (obj.get("binaryData") or {}).get(DATA_KEY)
    return decode(value) if isinstance(value, str) else None


def records_of(obj: Mapping[str, Any] | None, *, uid: str) -> dict[str, str]:
    """The pushed-change records a snapshot's ConfigMap holds for this Trigger."""
    if obj is None or not owned(obj, uid=uid):
        return {}
    data = obj.get("data") or {}
    return {
        k: v
        for k, v in data.items()
        if k.startswith((RECORD_PREFIX, LOST_PREFIX)) and isinstance(v, str)
    }


class SnapshotStore:
    """Reads and writes snapshots (and pushed-change records) through :mod:`kfn.kube`."""

    MANAGER: Final = "kfn-bucket"

    def load(self, namespace: str, trigger: str, *, uid: str, source: str) -> Snapshot | None:
        obj = kube.get("v1", "ConfigMap", namespace, configmap_name(trigger))
        return snapshot_of(obj, uid=uid, source=source)

    def kept(self, namespace: str, trigger: str, *, uid: str) -> bool:
        """Whether this Trigger has a snapshot's ConfigMap at all (of another source, or
        unreadable): then its next baseline is not its first."""
        return owned(kube.get("v1", "ConfigMap", namespace, configmap_name(trigger)), uid=uid)

    def save(
        self,
        namespace: str,
        trigger: str,
        *,
        uid: str,
        source: str,
        snapshot: Mapping[str, str],
    ) -> None:
        obj = configmap(
            namespace=namespace, trigger=trigger, uid=uid, source=source, snapshot=snapshot
        )
        size = len(obj["binaryData"][DATA_KEY])
        if size > MAX_SNAPSHOT_BYTES:
            raise SnapshotTooLargeError(
                f"the snapshot of {len(snapshot)} objects needs {size} bytes, more than a "
                "ConfigMap holds; narrow the Trigger's filter prefix"
            )
        kube.apply(obj, manager=self.MANAGER)

    def records(self, namespace: str, trigger: str, *, uid: str) -> dict[str, str]:
        """The pushed changes recorded since the catch-up last folded them."""
        obj = kube.get("v1", "ConfigMap", namespace, configmap_name(trigger))
        return records_of(obj, uid=uid)

    def record(self, namespace: str, trigger: str, entries: Mapping[str, str]) -> None:
        """Adds records (one merge patch); :class:`kfn.kube.ApiError` 404 before a baseline."""
        kube.patch("v1", "ConfigMap", namespace, configmap_name(trigger),
                   {"data": dict(entries)})  # fmt: skip

    def drop_records(self, namespace: str, trigger: str, keys: Iterable[str]) -> None:
        """Removes folded records; records added meanwhile have other keys and stay."""
        body = {"data": dict.fromkeys(keys)}
        if body["data"]:
            kube.patch("v1", "ConfigMap", namespace, configmap_name(trigger), body)


class SnapshotTooLargeError(Exception):
    """The bucket (under the filter) has too many objects to keep a snapshot of."""
