"""Handing a pushed event to another replica when this one stops before the event ended.

A store's webhook sends each notification once and does not retry, so a replica that is
stopping (a rolling update, a node drain) must not drop the events it holds: one waiting
for a retry 60 s away, or throttled behind a busy function. It sends each of them to
``POST /handoff`` on the worker's Service, which by then routes only to the replicas that
stay. The receiving replica answers 202 once the event is in its pool and goes on from the
same :class:`~kfn.triggers.delivery.Progress`: the same request id (the function's
``aws_request_id``), the same first-seen time for ``maximumEventAge``, the attempts
already used and the time the next one is due.

The body is signed with a key the replicas share (HMAC-SHA256 in ``Kfn-Handoff-Signature``):
``/handoff`` carries whole events, so nothing else in the cluster may post one.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import http.client
import json
import urllib.parse
from typing import Any, Final

from kfn.triggers import delivery

PATH: Final = "/handoff"
SIGNATURE_HEADER: Final = "Kfn-Handoff-Signature"
#: The version of the body's shape; a replica refuses another one with 400.
VERSION: Final = 1


class HandoffError(ValueError):
    """A hand-off body that is malformed or not signed with the shared key."""


@dataclasses.dataclass(frozen=True)
class Handoff:
    """One event moving to another replica."""

    namespace: str
    trigger: str
    uid: str
    request_id: str
    first_seen: datetime.datetime
    payload: bytes
    progress: delivery.Progress

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.trigger


def _time(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def encode(item: Handoff) -> bytes:
    """The JSON body of a hand-off."""
    body = {
        "version": VERSION,
        "trigger": {"namespace": item.namespace, "name": item.trigger, "uid": item.uid},
        "requestId": item.request_id,
        "firstSeen": _time(item.first_seen),
        "progress": {
            "failures": item.progress.failures,
            "throttles": item.progress.throttles,
            "notBefore": _time(item.progress.not_before),
        },
        "payload": json.loads(item.payload),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the shared key's over ``body`` (in constant time)."""
    return bool(key) and signature is not None and hmac.compare_digest(sign(key, body), signature)


def _parse_time(value: Any, field: str) -> datetime.datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise HandoffError(f"{field} is not a time: {value!r}") from None
    if parsed.tzinfo is None:
        raise HandoffError(f"{field} has no time zone: {value!r}")
    return parsed


def decode(body: bytes) -> Handoff:
    """The hand-off in a verified body; :class:`HandoffError` when it is malformed."""
    try:
        raw = json.loads(body)
        if raw.get("version") != VERSION:
            raise HandoffError(f"unknown hand-off version {raw.get('version')!r}")
        trigger, progress = raw["trigger"], raw["progress"]
        first_seen = _parse_time(raw["firstSeen"], "firstSeen")
        if first_seen is None:
            raise HandoffError("firstSeen is missing")
        return Handoff(
            namespace=str(trigger["namespace"]),
            trigger=str(trigger["name"]),
            uid=str(trigger["uid"]),
            request_id=str(raw["requestId"]),
            first_seen=first_seen,
            payload=json.dumps(raw["payload"]).encode(),
            progress=delivery.Progress(
                failures=int(progress["failures"]),
                throttles=int(progress["throttles"]),
                not_before=_parse_time(progress.get("notBefore"), "notBefore"),
            ),
        )
    except HandoffError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HandoffError(f"not a hand-off: {exc}") from None


def send(base_url: str, key: bytes, item: Handoff, *, timeout: float = 5.0) -> int:
    """POSTs one hand-off to ``base_url`` (the worker's Service); the answer's status, or 0
    when no replica could be reached."""
    body = encode(item)
    url = urllib.parse.urlsplit(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    connection_type = (
        http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(url.hostname or "", port, timeout=timeout)
    try:
        connection.request(
            "POST",
            url.path.rstrip("/") + PATH,
            body=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(key, body),
                "Connection": "close",
            },
        )
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        connection.close()
