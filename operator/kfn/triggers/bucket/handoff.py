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
``/handoff`` carries whole events, so nothing else in the cluster may post one. A signed body
is good once, for a minute: it carries its expiry (:data:`VALIDITY` after it was sent) and a
random nonce, and a replica refuses one past its expiry, one dated further ahead than the
validity allows, and a nonce it has taken before (:class:`Replays`, kept until their
expiry). So a body seen on the wire cannot be sent again later. (Two replicas do not share
what they took: within its minute a body could be taken once by each; the events it carries
keep their request id, so the function can tell.)

A body without expiry and nonce (sent by a replica of an earlier kfn, during the rolling
update to this one) is taken only within :data:`LEGACY_GRACE` of the receiving process's
start, so that update loses no event and such a body cannot be replayed afterwards.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import hmac
import http.client
import json
import secrets
import urllib.parse
from typing import Any, Final

from kfn.clock import Clock, utcnow
from kfn.triggers import delivery

PATH: Final = "/handoff"
SIGNATURE_HEADER: Final = "Kfn-Handoff-Signature"
#: The version of the body's shape; a replica refuses another one with 400.
VERSION: Final = 1
#: How long a signed hand-off may be taken after it was sent.
VALIDITY: Final = datetime.timedelta(seconds=60)
#: How far the sender's clock may run ahead of the receiver's.
SKEW: Final = datetime.timedelta(seconds=30)
#: How long after its start a replica takes bodies without expiry and nonce.
LEGACY_GRACE: Final = datetime.timedelta(minutes=15)
#: Nonces a replica remembers at most (a minute of hand-offs is far fewer).
REPLAY_LIMIT: Final = 100_000
#: How long one hand-off may take to be answered.
SEND_TIMEOUT: Final = 5.0


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


@dataclasses.dataclass(frozen=True)
class Sealed:
    """A hand-off as received: the event, until when it may be taken, and its nonce (both
    None in a body of an earlier kfn)."""

    item: Handoff
    expires: datetime.datetime | None
    nonce: str | None


def encode(item: Handoff, *, expires: datetime.datetime | None = None, nonce: str = "") -> bytes:
    """The JSON body of a hand-off, good until ``expires`` and once (``nonce``)."""
    body: dict[str, Any] = {
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
    if expires is not None:
        body["expires"] = _time(expires)
        body["nonce"] = nonce
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


def decode(body: bytes) -> Sealed:
    """The hand-off in a verified body; :class:`HandoffError` when it is malformed."""
    try:
        raw = json.loads(body)
        expires = _parse_time(raw.get("expires"), "expires")
        nonce = raw.get("nonce")
        if (expires is None) != (nonce is None) or (nonce is not None and not str(nonce)):
            raise HandoffError("expires and nonce come together")
        if raw.get("version") != VERSION:
            raise HandoffError(f"unknown hand-off version {raw.get('version')!r}")
        trigger, progress = raw["trigger"], raw["progress"]
        first_seen = _parse_time(raw["firstSeen"], "firstSeen")
        if first_seen is None:
            raise HandoffError("firstSeen is missing")
        item = Handoff(
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
        return Sealed(item, expires, None if nonce is None else str(nonce))
    except HandoffError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HandoffError(f"not a hand-off: {exc}") from None


class Replays:
    """The nonces a replica has taken, each kept until its body's expiry (time passed in);
    at most ``limit``, the oldest forgotten first."""

    def __init__(self, started: datetime.datetime, limit: int = REPLAY_LIMIT) -> None:
        self.started = started
        self.limit = limit
        self._seen: collections.OrderedDict[str, datetime.datetime] = collections.OrderedDict()

    def admit(self, sealed: Sealed, now: datetime.datetime) -> str | None:
        """Why ``sealed`` may not be taken now, or None (then its nonce is remembered)."""
        if sealed.expires is None or sealed.nonce is None:
            if now - self.started > LEGACY_GRACE:
                return (
                    "a hand-off without expiry is taken only during an update from an earlier kfn"
                )
            return None
        if sealed.expires <= now:
            return f"the hand-off expired at {sealed.expires.isoformat()}"
        if sealed.expires > now + VALIDITY + SKEW:
            return f"the hand-off is dated too far ahead ({sealed.expires.isoformat()})"
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if sealed.nonce in self._seen:
            return "the hand-off was taken before"
        self._seen[sealed.nonce] = sealed.expires
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return None

    def __len__(self) -> int:
        return len(self._seen)


def send(
    base_url: str,
    key: bytes,
    item: Handoff,
    *,
    timeout: float = SEND_TIMEOUT,
    clock: Clock = utcnow,
) -> int:
    """POSTs one hand-off to ``base_url`` (the worker's Service), good for :data:`VALIDITY`
    and once; the answer's status, or 0 when no replica could be reached."""
    body = encode(item, expires=clock() + VALIDITY, nonce=secrets.token_hex(16))
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
