"""The bucket worker process: route pushed notifications, poll buckets, deliver events.

Threads share one :class:`Routes` table:

* the reflector (:func:`kfn.kube.reflect`) keeps every Trigger with ``spec.bucket`` in it;
* the HTTP receiver (:mod:`~kfn.triggers.bucket.receiver`) hands each notification to
  :meth:`Worker.handle_push`, which delivers every matching record and answers only then,
  and each event another replica hands over (:mod:`~kfn.triggers.bucket.handoff`) to
  :meth:`Worker.take_over`;
* the lease keeper holds the ``kfn-bucket-poller`` Lease; while it leads, the poll loop
  lists the buckets of Poll Triggers when due (:meth:`Worker.poll_once`);
* the status writer (:mod:`kfn.triggers.status`) writes conditions in the background.

Deliveries of both modes run in one bounded thread pool through
:class:`kfn.triggers.delivery.AsyncDeliverer`, which returns only once an event was
delivered or sent to onFailure. A pushed event still held when the replica stops is handed
to another replica rather than dropped: the store will not send it again.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from kfn import kube, triggers
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.triggers import delivery, status
from kfn.triggers import lease as lease_
from kfn.triggers.bucket import events, handoff, poll, s3

API_VERSION: Final = f"{meta.GROUP}/{meta.VERSION}"
KIND: Final = "bucket"
LEASE_NAME: Final = "kfn-bucket-poller"
#: Changes delivered together before the snapshot is written.
POLL_BATCH: Final = 32
#: Deliveries in flight at once, over all Triggers and both modes.
DELIVERY_THREADS: Final = 64
#: How long a stopping replica keeps trying to hand one event to another replica.
HANDOFF_PATIENCE: Final = 10.0

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]
Key = tuple[str, str]


class Deliver(Protocol):
    """Delivers one event under a Trigger's policy, blocking (an AsyncDeliverer's method)."""

    def __call__(
        self, target: delivery.Target, spec: trigger_api.AsyncDelivery, payload: bytes, *,
        request_id: str, first_seen: datetime.datetime, progress: delivery.Progress | None,
    ) -> delivery.Result: ...  # fmt: skip


SendHandoff = Callable[[str, bytes, handoff.Handoff], int]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _result(future: concurrent.futures.Future[delivery.Result]) -> delivery.Result:
    """A queued delivery's Result; unhandled when the pool dropped it at exit (it was
    handed over just before)."""
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        return delivery.Result(False, False, 0)


@dataclasses.dataclass(frozen=True)
class Route:
    """One bucket Trigger as the worker uses it."""

    namespace: str
    name: str
    uid: str
    function: str
    spec: trigger_api.BucketTrigger
    obj: kube.Object

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def target(self) -> delivery.Target:
        return delivery.Target(self.namespace, self.function, self.name, KIND)


def route_of(obj: kube.Object) -> Route | None:
    """The Route of a Trigger object, or None when it is not a valid bucket Trigger."""
    trigger = triggers.valid_trigger(obj)
    if trigger is None:
        return None
    if trigger.spec.bucket is None:
        return None
    return Route(
        namespace=trigger.metadata.namespace or "",
        name=trigger.metadata.name,
        uid=str(trigger.metadata.uid or ""),
        function=trigger.spec.function_ref.name,
        spec=trigger.spec.bucket,
        obj=obj,
    )


def _key(obj: kube.Object) -> Key:
    meta_ = obj.get("metadata") or {}
    return str(meta_.get("namespace", "")), str(meta_.get("name", ""))


class Routes:
    """The bucket Triggers, fed by the reflector; ``synced`` is set after the first list,
    before which no notification can be routed (the receiver answers 503)."""

    def __init__(self, on_change: Callable[[Route | None, Key], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.routes: dict[Key, Route] = {}
        self.synced = threading.Event()
        self.on_change = on_change

    def replace(self, objects: list[kube.Object]) -> None:
        fresh = {route.key: route for route in map(route_of, objects) if route is not None}
        with self.lock:
            gone = [key for key in self.routes if key not in fresh]
            self.routes = fresh
        for key in gone:
            self._notify(None, key)
        for key, route in fresh.items():
            self._notify(route, key)
        self.synced.set()

    def change(self, kind: str, obj: kube.Object) -> None:
        key = _key(obj)
        route = None if kind == "DELETED" else route_of(obj)
        with self.lock:
            if route is None:
                self.routes.pop(key, None)
            else:
                self.routes[key] = route
        self._notify(route, key)

    def _notify(self, route: Route | None, key: Key) -> None:
        if self.on_change is not None:
            self.on_change(route, key)

    def get(self, key: Key) -> Route | None:
        with self.lock:
            return self.routes.get(key)

    def pushed(self) -> list[Route]:
        with self.lock:
            return [r for r in self.routes.values() if r.spec.mode == "Push"]

    def polled(self) -> list[Route]:
        with self.lock:
            return [r for r in self.routes.values() if r.spec.mode == "Poll"]


def plan_push(
    routes: list[Route], changes: list[events.ObjectEvent]
) -> list[tuple[Route, events.ObjectEvent]]:
    """Every (Trigger, change) pair to deliver: a change goes to each Push Trigger whose
    bucket, event types and filter match it."""
    return [
        (route, change)
        for change in changes
        for route in routes
        if route.spec.mode == "Push" and events.matches(route.spec, change)
    ]


def payload_of(route: Route, change: events.ObjectEvent) -> bytes:
    """The S3 event the function receives for one change: one record, AWS's shape."""
    record = events.record(change, configuration_id=route.name, region=route.spec.region)
    return json.dumps({"Records": [record]}, separators=(",", ":")).encode()


# --- verdicts (pure) ---------------------------------------------------------------------------


def push_verdict(url: str, route: Route) -> status.Verdict:
    return status.Verdict(
        True,
        trigger_api.Reason.CONNECTED,
        f"waiting for notifications at {url}/events/{route.namespace} (bucket "
        f"{route.spec.bucket}) or {url}/events/{route.namespace}/{route.name}",
    )


def delivery_verdict(result: delivery.Result) -> status.Verdict | None:
    """The Delivering verdict after one event, or None when it says nothing new (the worker
    stopped before the event ended)."""
    if not result.handled:
        return None
    if result.delivered:
        return status.Verdict(True, trigger_api.Reason.DELIVERING, "events are delivered")
    detail = result.outcome.describe() if result.outcome is not None else "no answer"
    return status.Verdict(
        False,
        trigger_api.Reason.DELIVERY_FAILING,
        f"an event failed ({result.condition}) after {result.attempts} attempts: {detail}",
    )


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:400]


#: S3 error codes that mean "these credentials are wrong", whatever the status code says
#: (versitygw answers an unknown access key with 404 XAdminUserNotFound).
CREDENTIAL_ERRORS: Final = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "XAdminUserNotFound",
    }
)


def source_verdict(
    error: Exception | None, route: Route, *, secrets: list[str] | None = None
) -> status.Verdict:
    """SourceReachable for a Poll Trigger after a listing: why it failed, in a message a
    user can act on and that never contains the credentials."""
    where = f"bucket {route.spec.bucket} at {route.spec.endpoint}"
    scrub = secrets or []
    if error is None:
        return status.Verdict(
            True,
            trigger_api.Reason.CONNECTED,
            f"listing {where} every {route.spec.poll_interval}",
        )
    if isinstance(error, delivery.CredentialsError):
        return status.Verdict(
            False, trigger_api.Reason.CREDENTIALS_NOT_FOUND, _scrub(str(error), scrub)
        )
    if isinstance(error, s3.S3Error):
        if error.status == 0:
            text = f"cannot reach {where}: {error.message}"
        elif error.status in (401, 403) or error.code in CREDENTIAL_ERRORS:
            text = delivery.refusal(
                where, route.namespace, route.spec.credentials_secret_ref,
                f"{error.code} {error.message}", "the access key and its rights on the bucket",
            )  # fmt: skip
        elif error.status == 404:
            text = f"{where} does not exist ({error.code})"
        else:
            text = f"listing {where} failed: {error}"
        return status.Verdict(False, trigger_api.Reason.CONNECTION_FAILED, _scrub(text, scrub))
    return status.Verdict(
        False,
        trigger_api.Reason.CONNECTION_FAILED,
        _scrub(f"polling {where} failed: {error}", scrub),
    )


def credentials_of(secret: Mapping[str, bytes] | None, route: Route) -> s3.Credentials | None:
    """The access key pair from the Trigger's Secret (None: unsigned requests)."""
    if secret is None:
        return None
    ref = route.spec.credentials_secret_ref
    name = f"{route.namespace}/{ref.name}" if ref else route.namespace
    missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not secret.get(k)]
    if missing:
        raise delivery.CredentialsError(f"Secret {name} has no {' or '.join(missing)}")
    token = secret.get("AWS_SESSION_TOKEN")
    return s3.Credentials(
        secret["AWS_ACCESS_KEY_ID"].decode(),
        secret["AWS_SECRET_ACCESS_KEY"].decode(),
        token.decode() if token else None,
    )


# --- the worker --------------------------------------------------------------------------------


@dataclasses.dataclass
class Held:
    """A pushed event this replica is delivering; ``handed`` once another replica has it,
    ``claimed`` once one thread is handing it over."""

    route: Route
    payload: bytes
    request_id: str
    first_seen: datetime.datetime
    handed: bool = False
    claimed: bool = False


@dataclasses.dataclass
class PollState:
    """A Poll Trigger's progress while this replica polls it."""

    source: str
    snapshot: poll.Snapshot | None = None
    due: datetime.datetime | None = None


class Worker:
    """Wires routing, delivery, polling and status together (see the module doc)."""

    def __init__(
        self,
        *,
        deliver: Deliver,
        public_url: str,
        lease: lease_.LeaseKeeper | None = None,
        statuses: status.StatusWriter | None = None,
        snapshots: poll.SnapshotStore | None = None,
        read_secret: delivery.SecretReader = delivery.read_secret,
        clock: Clock = utcnow,
        threads: int = DELIVERY_THREADS,
        abort: threading.Event | None = None,
        peer_url: str | None = None,
        handoff_key: bytes = b"",
        send_handoff: SendHandoff = handoff.send,
    ) -> None:  # fmt: skip
        self.deliver_fn = deliver
        self.public_url = public_url.rstrip("/")
        #: The worker's own Service, which hand-offs go to.
        self.peer_url = (peer_url or public_url).rstrip("/")
        self.handoff_key = handoff_key
        self.send_handoff = send_handoff
        self.lease = lease
        self.statuses = statuses
        self.snapshots = snapshots or poll.SnapshotStore()
        self.read_secret = read_secret
        self.clock = clock
        self.routes = Routes(self._route_changed)
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="deliver")
        #: Set on SIGTERM: readiness fails, polling stops after the batch in hand.
        self.terminating = threading.Event()
        #: Set when the grace period is over: deliveries still retrying give up unhandled.
        self.abort = abort or threading.Event()
        self.polls: dict[Key, PollState] = {}
        self._tracked_polls = False
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._held: dict[int, Held] = {}
        self._tokens = itertools.count()
        self._settled = threading.Condition(self._lock)

    # -- readiness (for the receiver) --

    def ready(self) -> bool:
        """Ready for notifications: the Triggers are known and no SIGTERM came."""
        return self.routes.synced.is_set() and not self.terminating.is_set()

    def accepting(self) -> bool:
        """Notifications are taken on until the grace period is over (also after SIGTERM,
        for senders that have not yet seen this replica leave the Service)."""
        return self.routes.synced.is_set() and not self.abort.is_set()

    # -- routing table and status --

    def _route_changed(self, route: Route | None, key: Key) -> None:
        if route is None:
            with self._lock:
                self.polls.pop(key, None)
            if self.statuses is not None:
                self.statuses.forget(key)
            delivery.forget_metrics(f"{key[0]}/{key[1]}", KIND)
            return
        if self.statuses is None:
            return
        if route.spec.mode == "Push":
            self.statuses.track(route.obj)
            self.statuses.set(route.key, reachable=push_verdict(self.public_url, route))
        elif self._tracked_polls:
            self.statuses.track(route.obj)

    def _lag(self, label: str, delta: int) -> None:
        with self._lock:
            value = self._in_flight.get(label, 0) + delta
            self._in_flight[label] = value
        delivery.LAG.labels(label, KIND).set(max(value, 0))

    # -- delivery --

    def deliver(
        self, route: Route, change: events.ObjectEvent, *, first_seen: datetime.datetime,
        polled: bool = False,
    ) -> delivery.Result:  # fmt: skip
        """Delivers one change to one Trigger's function (blocking) and records the outcome."""
        payload = payload_of(route, change)
        request_id = events.request_id(route.uid, change, polled=polled)
        if polled:
            # A polled change the worker stops before is listed again by the next poller.
            return self._deliver(route, payload, request_id, first_seen, None)
        token, held = self._hold(route, payload, request_id, first_seen)
        return self._deliver_held(token, held, None)

    def _deliver(
        self, route: Route, payload: bytes, request_id: str, first_seen: datetime.datetime,
        progress: delivery.Progress | None,
    ) -> delivery.Result:  # fmt: skip
        self._lag(route.label, 1)
        try:
            result = self.deliver_fn(route.target, route.spec.delivery, payload,
                                     request_id=request_id, first_seen=first_seen,
                                     progress=progress)  # fmt: skip
        finally:
            self._lag(route.label, -1)
        verdict = delivery_verdict(result)
        if self.statuses is not None and verdict is not None:
            self.statuses.set(route.key, delivering=verdict, lastEventTime=self.clock())
        return result

    def _hold(
        self, route: Route, payload: bytes, request_id: str, first_seen: datetime.datetime
    ) -> tuple[int, Held]:
        """Records a pushed event as held by this replica until it ended or was handed on."""
        held = Held(route, payload, request_id, first_seen)
        with self._lock:
            token = next(self._tokens)
            self._held[token] = held
        return token, held

    def _release(self, token: int) -> None:
        with self._lock:
            del self._held[token]
            self._settled.notify_all()

    def _deliver_held(
        self, token: int, held: Held, progress: delivery.Progress | None
    ) -> delivery.Result:
        """Delivers a held event; hands it to another replica when this one stops first."""
        try:
            if held.handed:  # handed over while it waited in the pool's queue
                return delivery.Result(True, False, 0, "HandedOff")
            result = self._deliver(held.route, held.payload, held.request_id, held.first_seen,
                                   progress)  # fmt: skip
            if result.handled or held.handed:
                return result
            resume = result.progress or progress or delivery.Progress()
            return self._hand_off(held, resume) or result
        finally:
            self._release(token)

    def _submit_pushed(
        self, route: Route, payload: bytes, request_id: str, first_seen: datetime.datetime,
        progress: delivery.Progress | None,
    ) -> concurrent.futures.Future[delivery.Result]:  # fmt: skip
        """Queues a pushed event in the pool, held from now on; RuntimeError once the pool
        is shut down."""
        token, held = self._hold(route, payload, request_id, first_seen)
        try:
            return self.pool.submit(self._deliver_held, token, held, progress)
        except RuntimeError:
            self._release(token)
            raise

    # -- hand-off between replicas --

    def _hand_off(
        self, held: Held, progress: delivery.Progress, deadline: float | None = None
    ) -> delivery.Result | None:
        """Gives ``held`` to another replica through the Service, trying until ``deadline``
        (monotonic; :data:`HANDOFF_PATIENCE` from now by default); a handled Result once
        one took it (or the Trigger is gone), None when none would."""
        route = held.route
        attempts = progress.failures + progress.throttles
        with self._lock:
            if held.claimed:  # the other thread that holds it hands it over
                return delivery.Result(True, False, attempts, "HandedOff")
            held.claimed = True
        if not self.handoff_key:
            logger.error("%s: stopping with event %s unhandled and no hand-off key; it is lost",
                         route.label, held.request_id)  # fmt: skip
            return None
        item = handoff.Handoff(
            namespace=route.namespace,
            trigger=route.name,
            uid=route.uid,
            request_id=held.request_id,
            first_seen=held.first_seen,
            payload=held.payload,
            progress=progress,
        )
        if deadline is None:
            deadline = time.monotonic() + HANDOFF_PATIENCE
        while True:
            code = self.send_handoff(self.peer_url, self.handoff_key, item)
            if code == 202:
                held.handed = True
                delivery.HANDED_OFF.labels(route.label, KIND).inc()
                logger.info("%s: handed event %s to another replica", route.label,
                            held.request_id)  # fmt: skip
                return delivery.Result(True, False, attempts, "HandedOff")
            if code in (404, 410):
                logger.warning("%s: the Trigger is gone; dropping %s", route.label,
                               held.request_id)  # fmt: skip
                return delivery.Result(True, False, attempts, "TriggerDeleted")
            if code in (400, 401) or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        logger.error("%s: no other replica took event %s (last answer %s); it is lost",
                     route.label, held.request_id, code or "none")  # fmt: skip
        return None

    def take_over(self, body: bytes, signature: str | None) -> tuple[int, str]:
        """Takes on an event a stopping replica hands over: 202 once it is in the pool."""
        if not handoff.verify(self.handoff_key, body, signature):
            return 401, "not signed with the hand-off key"
        try:
            item = handoff.decode(body)
        except handoff.HandoffError as exc:
            return 400, str(exc)
        route = self._handoff_route(item)
        if not isinstance(route, Route):
            return route
        try:
            self._submit_pushed(route, item.payload, item.request_id, item.first_seen,
                                item.progress)  # fmt: skip
        except RuntimeError:
            return 503, "stopping"
        return 202, "taken over"

    def _handoff_route(self, item: handoff.Handoff) -> Route | tuple[int, str]:
        """The Route a hand-off goes to, or the answer that refuses it."""
        if not self.accepting():
            return 503, "stopping"
        route = self.routes.get(item.key)
        if route is None:
            return 404, f"no bucket Trigger {item.namespace}/{item.trigger}"
        if route.uid != item.uid:
            return 410, f"Trigger {item.namespace}/{item.trigger} was replaced"
        return route

    def wait_settled(self, timeout: float) -> bool:
        """Waits until no pushed event is held; False if ``timeout`` passed first."""
        with self._settled:
            return self._settled.wait_for(lambda: not self._held, timeout)

    def hand_off_held(self) -> int:
        """Hands every pushed event still held (its invocation still running) to another
        replica, as the last thing before the process exits; how many stayed unhandled.
        Such an event may run twice: at least once is kept over at most once."""
        with self._lock:
            held = [item for item in self._held.values() if not item.handed]
        lost = 0
        deadline = time.monotonic() + HANDOFF_PATIENCE
        for item in held:
            logger.warning("%s: event %s still running at the end of the grace period",
                           item.route.label, item.request_id)  # fmt: skip
            if self._hand_off(item, delivery.Progress(), deadline) is None:
                lost += 1
        return lost

    # -- push --

    def handle_push(self, payload: object, only: Key | None = None) -> tuple[int, str]:
        """Handles one pushed notification; the HTTP status and a short answer.

        200 only once every matching record was handled; 503 when the worker stops before
        (the store may send it again); 400 for a body that is not a notification; 404 for
        an unknown Trigger in ``/events/<namespace>/<trigger>``. ``only`` with an empty name
        limits the routing by bucket to one namespace.
        """
        received = self.clock()
        try:
            changes = events.parse_notification(payload, received)
        except events.NotificationError as exc:
            return 400, str(exc)
        if not changes:
            return 200, "test event"
        routes = self._push_routes(only)
        if routes is None:
            assert only is not None
            return 404, f"no Push Trigger {only[0]}/{only[1]}"
        return self._deliver_all(plan_push(routes, changes), received)

    def _deliver_all(
        self, pairs: list[tuple[Route, events.ObjectEvent]], received: datetime.datetime
    ) -> tuple[int, str]:
        if not pairs:
            return 200, "no Trigger matches"
        if self.abort.is_set():
            return 503, "stopping"
        for route, _ in pairs:
            delivery.RECEIVED.labels(route.label, KIND).inc()
        futures = []
        try:
            for route, change in pairs:
                payload = payload_of(route, change)
                request_id = events.request_id(route.uid, change, polled=False)
                futures.append(
                    self._submit_pushed(route, payload, request_id, received, None)
                )  # fmt: skip
        except RuntimeError:  # the pool is shut down: the process is exiting
            return 503, "stopping"
        results = [_result(future) for future in futures]
        if all(result.handled for result in results):
            return 200, f"{len(results)} events handled"
        return 503, "stopping before every event was handled"

    def _push_routes(self, only: Key | None) -> list[Route] | None:
        """The Push Triggers a notification may go to; None when ``only`` names none."""
        if only is None:
            return self.routes.pushed()
        if not only[1]:
            return [route for route in self.routes.pushed() if route.namespace == only[0]]
        route = self.routes.get(only)
        if route is None or route.spec.mode != "Push":
            return None
        return [route]

    # -- poll --

    def sync_leadership(self, leading: bool) -> None:
        """Tracks the Poll Triggers' status while leading; forgets what is cached when not,
        since another replica may have moved their snapshots on."""
        if leading == self._tracked_polls:
            return
        self._tracked_polls = leading
        with self._lock:
            self.polls.clear()
        if self.statuses is None:
            return
        for route in self.routes.polled():
            if leading:
                self.statuses.track(route.obj)
            else:
                self.statuses.forget(route.key)

    def due(self, now: datetime.datetime) -> list[Route]:
        """The Poll Triggers whose interval has passed (or that were never polled)."""
        return [
            route
            for route in self.routes.polled()
            if (due := self._state(route).due) is None or due <= now
        ]

    def _state(self, route: Route) -> PollState:
        """The Trigger's poll state; started over when its source changed."""
        source = poll.source_of(route.spec)
        with self._lock:
            state = self.polls.get(route.key)
            if state is None or state.source != source:
                state = self.polls[route.key] = PollState(source)
            return state

    def _schedule(self, route: Route, started: datetime.datetime) -> None:
        interval = meta.parse_duration(route.spec.poll_interval)
        with self._lock:
            state = self.polls.get(route.key)
            if state is not None:
                state.due = started + interval

    def poll_once(self, route: Route) -> None:
        """Lists one bucket, delivers its changes batch by batch, persists the snapshot."""
        started = self.clock()
        try:
            self._poll(route)
        except Exception:
            logger.exception("%s: polling failed", route.label)
        finally:
            self._schedule(route, started)

    def _poll(self, route: Route) -> None:
        source = poll.source_of(route.spec)
        secrets: list[str] = []
        try:
            credentials = credentials_of(
                self.read_secret(route.namespace, route.spec.credentials_secret_ref), route
            )
            if credentials is not None:
                secrets = [credentials.secret_key, credentials.session_token or ""]
            client = s3.Client(route.spec.endpoint, route.spec.region, credentials)
            prefix = (route.spec.filter.prefix or "") if route.spec.filter else ""
            listing = [
                item
                for item in client.list_objects(route.spec.bucket, prefix)
                if poll.in_scope(route.spec, item.key)
            ]
            state = self._state(route)
            if state.snapshot is None:
                state.snapshot = self.snapshots.load(
                    route.namespace, route.name, uid=route.uid, source=source
                )
        except (delivery.CredentialsError, s3.S3Error, kube.ApiError, OSError) as exc:
            verdict = source_verdict(exc, route, secrets=secrets)
            logger.warning("%s: %s", route.label, verdict.message)
            self._set_status(route, reachable=verdict)
            return
        self._set_status(route, reachable=source_verdict(None, route))
        if state.snapshot is None:
            baseline = {item.key: item.etag for item in listing}
            self._save(route, source, baseline)
            state.snapshot = baseline
            logger.info("%s: baseline of %d objects taken", route.label, len(baseline))
            return
        changes = poll.diff(state.snapshot, listing)
        if not changes:
            return
        quiet = [c for c in changes if not poll.reported(route.spec, c)]
        loud = [c for c in changes if poll.reported(route.spec, c)]
        snapshot = poll.advance(state.snapshot, quiet)
        if quiet and not loud:
            self._save(route, source, snapshot)
        state.snapshot = snapshot
        now = self.clock()
        found = [
            (change, events.polled(route.spec.bucket, change.key, change.name, now=now,
                                   index=i, size=change.size, etag=change.etag,
                                   region=route.spec.region))
            for i, change in enumerate(loud)
        ]  # fmt: skip
        delivery.RECEIVED.labels(route.label, KIND).inc(len(found))
        for batch in poll.batches([c for c, _ in found], POLL_BATCH):
            if self.terminating.is_set() or not self._may_poll():
                return
            by_change = dict(found)
            futures = {
                change: self.pool.submit(
                    self.deliver, route, by_change[change], first_seen=now, polled=True
                )
                for change in batch
            }
            handled = [change for change, future in futures.items() if future.result().handled]
            state.snapshot = poll.advance(state.snapshot, handled)
            self._save(route, source, state.snapshot)
            if len(handled) < len(batch):
                return

    def _may_poll(self) -> bool:
        return self.lease is None or self.lease.leading()

    def _save(self, route: Route, source: str, snapshot: poll.Snapshot) -> None:
        try:
            self.snapshots.save(
                route.namespace, route.name, uid=route.uid, source=source, snapshot=snapshot
            )
        except (kube.ApiError, OSError, poll.SnapshotTooLargeError) as exc:
            # Not fatal: the next poll starts from what was last written and resends.
            logger.warning("%s: writing the snapshot failed: %s", route.label, exc)

    def _set_status(self, route: Route, *, reachable: status.Verdict) -> None:
        if self.statuses is not None:
            self.statuses.set(route.key, reachable=reachable)

    def poll_loop(self, stop: threading.Event) -> None:
        """Polls due Triggers while this replica holds the Lease, one poller thread each."""
        running: dict[Key, concurrent.futures.Future[None]] = {}
        pollers = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="poll")
        try:
            while not stop.is_set() and not self.terminating.is_set():
                leading = self._may_poll()
                self.sync_leadership(leading)
                running = {k: f for k, f in running.items() if not f.done()}
                if leading:
                    for route in self.due(self.clock()):
                        if route.key not in running:
                            running[route.key] = pollers.submit(self.poll_once, route)
                self.terminating.wait(0.25)
        finally:
            pollers.shutdown(wait=True)


# --- the process -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shutdown:
    """How a replica leaves after SIGTERM, in seconds.

    It keeps receiving for at least ``drain`` and until no notification came for ``quiet``
    (the Service has stopped sending here), never longer than ``drain_max``. Then events in
    hand get ``patience`` to end on their own; those still waiting for a retry are handed to
    another replica, and invocations still running get until ``grace`` (counted from the
    end of the drain) before they are handed over too.
    """

    drain: float = 5.0
    quiet: float = 2.0
    drain_max: float = 15.0
    patience: float = 15.0
    grace: float = 35.0
    last_answers: float = 3.0


def drained(shutdown: Shutdown, *, stopped_at: float, last_post: float, now: float) -> bool:
    """Whether a stopping replica may close its listener (monotonic seconds)."""
    if now - stopped_at >= shutdown.drain_max:
        return True
    return now - stopped_at >= shutdown.drain and now - last_post >= shutdown.quiet


def run(
    worker: Worker,
    address: tuple[str, int],
    *,
    shutdown: Shutdown = Shutdown(),
) -> None:
    """Runs every thread until ``worker.terminating`` is set, then leaves without losing
    a notification in hand (blocking)."""
    from kfn.triggers.bucket import receiver  # noqa: PLC0415 - the process's own edge

    stop_watch = threading.Event()
    stop_lease = threading.Event()
    stop_status = threading.Event()
    threads = [
        threading.Thread(
            target=kube.reflect,
            args=(API_VERSION, trigger_api.KIND, worker.routes, stop_watch),
            name="reflect",
            daemon=True,
        ),
        threading.Thread(target=worker.poll_loop, args=(stop_watch,), name="poll", daemon=True),
    ]
    if worker.lease is not None:
        threads.append(
            threading.Thread(target=worker.lease.run, args=(stop_lease,), name="lease", daemon=True)
        )
    if worker.statuses is not None:
        threads.append(
            threading.Thread(
                target=worker.statuses.run, args=(stop_status,), name="status", daemon=True
            )
        )
    for thread in threads:
        thread.start()
    server, _ = receiver.serve(address, worker)
    logger.info("receiving notifications on %s:%d", *address)
    worker.terminating.wait()
    stopped_at = time.monotonic()
    # From now on every answer closes its connection: the store dials the Service again
    # for its next notification and reaches a replica that stays.
    server.closing.set()
    logger.info("stopping: not ready; receiving until no notification came for %.0fs",
                shutdown.quiet)  # fmt: skip
    while not drained(shutdown, stopped_at=stopped_at, last_post=server.last_post,
                      now=time.monotonic()):  # fmt: skip
        time.sleep(0.1)
    server.shutdown()
    idle = server.close_idle_connections()
    logger.info("stopped receiving after %.1fs (closed %d idle connections)",
                time.monotonic() - stopped_at, idle)  # fmt: skip
    deadline = time.monotonic() + shutdown.grace
    worker.wait_settled(shutdown.patience)
    threads[1].join(max(0.0, deadline - time.monotonic()))
    # Retries still waiting end now; each is handed to another replica by its own thread.
    worker.abort.set()
    if not worker.wait_settled(max(0.0, deadline - time.monotonic())):
        lost = worker.hand_off_held()
        if lost:
            logger.error("%d events still in hand could not be handed over", lost)
    server.wait_idle(shutdown.last_answers)
    threads[1].join(shutdown.last_answers)
    stop_watch.set()
    worker.pool.shutdown(wait=False, cancel_futures=True)
    stop_lease.set()
    if worker.lease is not None:
        worker.lease.release()
    stop_status.set()
    if worker.statuses is not None:
        worker.statuses.flush()
    server.server_close()
    logger.info("stopped")
