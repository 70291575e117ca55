"""How trigger workers hand events to functions, and where events that fail end up.

Every trigger invokes through the activator's invoke API, so an event wakes a function at
zero and never exceeds its concurrency. Two ways are offered:

* :class:`Invoker` — a synchronous invocation (``RequestResponse``). Stream triggers use it
  directly: they commit a partition's offsets only after the function answered.
* :class:`AsyncDeliverer` — Lambda's asynchronous semantics, run *in the trigger worker*
  rather than in the activator's memory: the worker invokes synchronously and retries under
  :mod:`kfn.retry` (the Trigger's ``delivery``; a missing function is held like throttling,
  so a Function created just after its Trigger loses nothing), then sends the event to its
  ``onFailure`` destination. It returns only once the event is handled, so the source (a bucket
  notification, a cron tick) is acknowledged only after that: nothing is lost when a worker
  or an activator dies in between; at worst an event is delivered twice.

:class:`Destinations` sends a failure record (Lambda's destination record) to a Function,
a Kafka topic or a NATS subject. Credentials come from Secrets and are held in memory only.

Metrics, by trigger and kind: events received, delivered, retried, failed (the function
never succeeded), dead-lettered (sent to onFailure), and lag (events waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import http.client
import json
import logging
import os
import socket
import ssl
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

import prometheus_client

from kfn import kube, retry
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.triggers import status

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]
Secret = Mapping[str, bytes]
#: Reads the Secret a Trigger names (None for no reference); :func:`read_secret` in a worker.
SecretReader = Callable[[str, meta.LocalObjectReference | None], Secret | None]

#: Lambda's retry delays for function errors; workers may shorten them (KFN_ASYNC_RETRY_DELAYS).
DEFAULT_RETRY_DELAYS: Final = retry.LAMBDA_RETRY_DELAYS
#: How long a failure record is retried when its destination is unreachable, between tries.
DESTINATION_BACKOFF: Final = (1.0, 30.0)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- metrics ---------------------------------------------------------------------------------

_LABELS: Final = ["trigger", "kind"]
RECEIVED = prometheus_client.Counter(
    "kfn_trigger_events_received", "Events (records, ticks, notifications) read.", _LABELS
)
DELIVERED = prometheus_client.Counter(
    "kfn_trigger_events_delivered", "Events the function handled successfully.", _LABELS
)
RETRIED = prometheus_client.Counter(
    "kfn_trigger_events_retried", "Events invoked again after a failed attempt.", _LABELS
)
FAILED = prometheus_client.Counter(
    "kfn_trigger_events_failed",
    "Events the function never handled (retries or age ran out, or refused).",
    _LABELS,
)
DEAD_LETTERED = prometheus_client.Counter(
    "kfn_trigger_events_dead_lettered", "Failed events sent to the onFailure destination.", _LABELS
)
HANDED_OFF = prometheus_client.Counter(
    "kfn_trigger_events_handed_off",
    "Events a stopping replica handed to another one to finish.",
    _LABELS,
)
LAG = prometheus_client.Gauge(
    "kfn_trigger_lag", "Events waiting: records behind the stream head, queued events.", _LABELS
)
_SERIES: Final = (RECEIVED, DELIVERED, RETRIED, FAILED, DEAD_LETTERED, HANDED_OFF, LAG)


def forget_metrics(trigger: str, kind: str) -> None:
    """Drops a deleted Trigger's series, so dashboards do not show it forever."""
    for metric in _SERIES:
        with contextlib.suppress(KeyError):
            metric.remove(trigger, kind)


# --- invoking through the activator ----------------------------------------------------------


Outcome = retry.Outcome


class _ClosedError(Exception):
    """The connection closed before any byte of an answer arrived."""


class _Connection:
    """One keep-alive HTTP/1.1 connection to the activator.

    The invoke API is one request shape and a plain answer, so the client is written for it:
    the request head is formatted in one go and sent with the body in one system call, and
    the answer's head is read line by line without a general header parser. At a hundred
    records per invocation this halves the worker's time per request against http.client.
    """

    def __init__(self, host: str, port: int, tls: bool, timeout: float) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.tls = tls
        self.sock = sock
        self.reader = sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def exchange(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bool, bytes, bool]:
        """Sends a request; (status, function error, body, keep the connection)."""
        self.sock.settimeout(timeout)
        self._send(head, body)
        while True:
            status, keep, length, chunked, function_error = self._read_head()
            if not 100 <= status < 200:
                break  # an interim answer is followed by the final one
        if chunked:
            data = self._chunks()
        elif length is not None:
            data = self.reader.read(length)
            if len(data) != length:
                raise http.client.IncompleteRead(data, length - len(data))
        else:
            data, keep = self.reader.read(), False
        return status, function_error, data, keep

    def _send(self, head: bytes, body: bytes) -> None:
        try:
            if self.tls:
                self.sock.sendall(head + body)
                return
            # One system call gathers both buffers; a large body may need more.
            sent = self.sock.sendmsg([head, body])
            if sent < len(head) + len(body):
                self.sock.sendall(memoryview(head + body)[sent:])
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClosedError(str(exc)) from None

    def _read_head(self) -> tuple[int, bool, int | None, bool, bool]:
        """The status line and the headers the invoke API uses."""
        line = self.reader.readline(65537)
        if not line:
            raise _ClosedError("the activator closed the connection")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise http.client.BadStatusLine(line.decode(errors="replace"))
        keep = parts[0] == b"HTTP/1.1"
        length: int | None = None
        chunked = function_error = False
        while (header := self.reader.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep = keep and b"close" not in value.lower()
            elif name == b"kfn-function-error":
                function_error = True
        return int(parts[1]), keep, length, chunked, function_error

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.reader.readline(65537).split(b";", 1)[0], 16)
            if size == 0:
                while self.reader.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.reader.read(size))
            self.reader.readline(65537)


class Invoker:
    """Invokes functions through the activator's invoke API; safe to share between threads.

    Each thread keeps one keep-alive connection. A request that fails on a connection reused
    from an earlier request, before any answer arrived, is sent once more on a fresh
    connection (the activator closes idle connections); otherwise a failure is reported as
    ``Outcome(0)`` for the caller's retry policy.
    """

    def __init__(self, activator_url: str) -> None:
        parsed = urllib.parse.urlsplit(activator_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"the activator URL must be http(s)://host[:port]: {activator_url!r}")
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.base_path = parsed.path.rstrip("/")
        self._host_header = parsed.netloc
        self._local = threading.local()

    def path(self, namespace: str, function: str) -> str:
        return f"{self.base_path}/_kfn/functions/{namespace}/{function}/invoke"

    def _connection(self, timeout: float) -> tuple[_Connection, bool]:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        connection = _Connection(self.host, self.port, self.scheme == "https", timeout)
        self._local.connection = connection
        return connection, False

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def invoke(
        self,
        namespace: str,
        function: str,
        payload: bytes,
        *,
        request_id: str,
        timeout: float = 900.0,
        invocation_type: str = "RequestResponse",
    ) -> Outcome:
        """One invocation; blocks until the function answered (or, for ``Event``, the
        activator accepted it)."""
        head = (
            f"POST {self.path(namespace, function)} HTTP/1.1\r\n"
            f"Host: {self._host_header}\r\n"
            "Content-Type: application/json\r\n"
            f"Kfn-Invocation-Type: {invocation_type}\r\n"
            f"Kfn-Request-Id: {request_id}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1")
        for _ in range(2):
            try:
                connection, reused = self._connection(timeout)
                status, error, body, keep = connection.exchange(head, payload, timeout)
            except _ClosedError as exc:
                self._drop()
                if reused:
                    continue
                return Outcome(0, str(exc).encode())
            except (OSError, ValueError, http.client.HTTPException) as exc:
                self._drop()
                return Outcome(0, str(exc).encode() or type(exc).__name__.encode())
            if not keep:
                self._drop()
            return Outcome(status, body, error)
        return Outcome(0, b"the activator closed the connection")


# --- failure records -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Who an event is for, and on behalf of which Trigger."""

    namespace: str
    function: str
    trigger: str
    kind: str

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.trigger}"


def function_arn(namespace: str, function: str) -> str:
    """The name a failure record gives the function (Lambda's ``functionArn``)."""
    return f"kfn:{namespace}:function:{function}"


def _payload_value(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")


def failure_record(
    target: Target,
    *,
    request_id: str,
    payload: bytes,
    condition: str,
    attempts: int,
    outcome: Outcome | None,
    now: datetime.datetime,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Lambda's on-failure destination record, plus ``trigger`` and any ``extra`` fields."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": meta.format_time(now),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn(target.namespace, target.function),
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": _payload_value(payload),
        "responseContext": {
            "statusCode": outcome.status if outcome else 0,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled" if outcome and outcome.function_error else None,
        },
        "responsePayload": _payload_value(outcome.body) if outcome and outcome.body else None,
        "trigger": {"namespace": target.namespace, "name": target.trigger, "kind": target.kind},
    }
    record.update(extra or {})
    return record


# --- credentials and client settings ---------------------------------------------------------


class CredentialsError(Exception):
    """A Secret a Trigger names does not exist or lacks a key; the message says which."""


def refusal(
    where: str, namespace: str, ref: meta.LocalObjectReference | None, detail: str, check: str
) -> str:
    """The SourceReachable message for credentials a source turned down: it names the
    Secret (never its values) and what to check in it."""
    whose = f"of Secret {namespace}/{ref.name}" if ref else "(none given)"
    return f"{where} refused the credentials {whose}: {detail}; check {check}"


def read_secret(namespace: str, ref: meta.LocalObjectReference | None) -> Secret | None:
    """The Secret's data, None without a reference; :class:`CredentialsError` if missing."""
    if ref is None:
        return None
    data = kube.get_secret(namespace, ref.name)
    if data is None:
        raise CredentialsError(f"Secret {namespace}/{ref.name} does not exist")
    return data


def kafka_config(servers: list[str], secret: Secret | None) -> dict[str, Any]:
    """librdkafka settings for brokers and a credentials Secret (see the Trigger API).

    Keys: ``username``/``password`` (SASL, ``mechanism`` defaults to SCRAM-SHA-512) and
    ``ca.crt`` (TLS). Values stay in this dict, which is never logged.
    """
    config: dict[str, Any] = {"bootstrap.servers": ",".join(servers)}
    if not secret:
        return config
    tls = "ca.crt" in secret
    if tls:
        config["ssl.ca.pem"] = secret["ca.crt"].decode()
    if "username" in secret:
        if "password" not in secret:
            raise CredentialsError("the Kafka credentials Secret has a username but no password")
        config["security.protocol"] = "SASL_SSL" if tls else "SASL_PLAINTEXT"
        config["sasl.mechanism"] = secret.get("mechanism", b"SCRAM-SHA-512").decode()
        config["sasl.username"] = secret["username"].decode()
        config["sasl.password"] = secret["password"].decode()
    elif tls:
        config["security.protocol"] = "SSL"
    return config


def nats_options(secret: Secret | None) -> dict[str, Any]:
    """nats-py ``connect`` options for a credentials Secret (``token``, ``creds`` or
    ``username``/``password``); a creds file is written mode 0600 to a private temp dir."""
    if not secret:
        return {}
    if "token" in secret:
        return {"token": secret["token"].decode()}
    if "creds" in secret:
        digest = hashlib.sha256(secret["creds"]).hexdigest()[:16]
        path = os.path.join(tempfile.gettempdir(), f"kfn-nats-{digest}.creds")
        if not os.path.exists(path):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(secret["creds"])
        return {"user_credentials": path}
    if "username" in secret:
        return {
            "user": secret["username"].decode(),
            "password": secret.get("password", b"").decode(),
        }
    raise CredentialsError("the NATS credentials Secret has none of token, creds or username")


# --- destinations ----------------------------------------------------------------------------


class DestinationError(Exception):
    """A failure record could not be sent; the message names the destination."""


class Destinations:
    """Sends failure records to the destination a Trigger names."""

    def __init__(self, invoker: Invoker) -> None:
        self.invoker = invoker
        self._producers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def send(
        self,
        namespace: str,
        destination: trigger_api.Destination,
        record: Mapping[str, Any],
        key: bytes | None = None,
    ) -> None:
        body = json.dumps(record, separators=(",", ":"), default=str).encode()
        if destination.function is not None:
            self._to_function(namespace, destination.function.name, body)
        elif destination.kafka is not None:
            self._to_kafka(namespace, destination.kafka, body, key)
        elif destination.nats is not None:
            self._to_nats(namespace, destination.nats, body)
        else:  # pragma: no cover - the API requires exactly one
            raise DestinationError("the destination names nothing")

    def _to_function(self, namespace: str, function: str, body: bytes) -> None:
        outcome = self.invoker.invoke(
            namespace, function, body, request_id=str(uuid.uuid4()), invocation_type="Event"
        )
        if outcome.status != 202:
            raise DestinationError(
                f"Function {namespace}/{function} did not accept the record: {outcome.describe()}"
            )

    def _producer(self, namespace: str, spec: trigger_api.KafkaDestination) -> Any:
        import confluent_kafka  # noqa: PLC0415 - loaded only by workers that produce

        ref = spec.credentials_secret_ref
        cache_key = json.dumps([namespace, spec.bootstrap_servers, ref.name if ref else None])
        with self._lock:
            producer = self._producers.get(cache_key)
            if producer is None:
                config = kafka_config(spec.bootstrap_servers, read_secret(namespace, ref))
                config.update({"enable.idempotence": True, "acks": "all", "linger.ms": 5})
                producer = confluent_kafka.Producer(config)
                self._producers[cache_key] = producer
            return producer

    def _to_kafka(
        self, namespace: str, spec: trigger_api.KafkaDestination, body: bytes, key: bytes | None
    ) -> None:
        try:
            producer = self._producer(namespace, spec)
        except CredentialsError as exc:
            raise DestinationError(str(exc)) from None
        errors: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(str(error))

        try:
            producer.produce(spec.topic, value=body, key=key, on_delivery=delivered)
        except (BufferError, Exception) as exc:  # KafkaException: unknown topic, too large
            raise DestinationError(f"Kafka topic {spec.topic}: {exc}") from None
        remaining = producer.flush(15.0)
        if remaining or errors:
            reason = errors[0] if errors else "no acknowledgement within 15s"
            raise DestinationError(f"Kafka topic {spec.topic}: {reason}")

    def _to_nats(self, namespace: str, spec: trigger_api.NatsDestination, body: bytes) -> None:
        try:
            options = nats_options(read_secret(namespace, spec.credentials_secret_ref))
        except CredentialsError as exc:
            raise DestinationError(str(exc)) from None
        try:
            asyncio.run(_publish_nats(spec.servers, spec.subject, body, options))
        except Exception as exc:  # any client failure means "not sent"
            reason = str(exc) or type(exc).__name__
            raise DestinationError(f"NATS subject {spec.subject}: {reason}") from None

    def close(self) -> None:
        with self._lock:
            for producer in self._producers.values():
                producer.flush(10.0)
            self._producers.clear()


async def _publish_nats(
    servers: list[str], subject: str, body: bytes, options: Mapping[str, Any]
) -> None:
    import nats  # noqa: PLC0415 - loaded only by workers that publish
    import nats.errors  # noqa: PLC0415
    import nats.js.errors  # noqa: PLC0415

    client = await nats.connect(
        servers=servers, connect_timeout=5, max_reconnect_attempts=0, **options
    )
    try:
        try:
            # A subject bound to a JetStream stream gets a stored, acknowledged publish.
            await client.jetstream().publish(subject, body, timeout=5)
        except nats.errors.NoRespondersError:
            await client.publish(subject, body)
            await client.flush(timeout=5)
    finally:
        await client.close()


# --- asynchronous delivery -------------------------------------------------------------------


def policy_of(
    spec: trigger_api.AsyncDelivery,
    retry_delays: tuple[float, ...],
    throttle_backoff: tuple[float, float] = retry.THROTTLE_BACKOFF,
) -> retry.Policy:
    """The retry policy of a Trigger's ``delivery`` (the waits come from the worker)."""
    return retry.Policy(
        retries=spec.max_retries,
        max_event_age=meta.parse_duration(spec.max_event_age).total_seconds(),
        retry_delays=retry_delays,
        throttle_backoff=throttle_backoff,
    )


def retry_delays_from_env(default: tuple[float, ...] = DEFAULT_RETRY_DELAYS) -> tuple[float, ...]:
    """``KFN_ASYNC_RETRY_DELAYS`` ("60s,120s"): the waits before each retry of a failed event."""
    configured = os.environ.get("KFN_ASYNC_RETRY_DELAYS", "").strip()
    if not configured:
        return default
    return tuple(
        meta.parse_duration(part.strip()).total_seconds() for part in configured.split(",")
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """Where an event interrupted by a stopping worker stands, so that another worker can
    go on under the same policy: the attempts used and when the next one is due."""

    failures: int = 0
    throttles: int = 0
    not_before: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """How an asynchronous event ended.

    ``handled`` is False only when the worker is stopping before the event ended; the
    source must then not acknowledge it (it is delivered again later), and ``progress``
    says where it stood.
    """

    handled: bool
    delivered: bool
    attempts: int
    condition: str | None = None
    outcome: Outcome | None = None
    progress: Progress | None = None


class AsyncDeliverer:
    """Delivers events under a Trigger's ``delivery`` policy (see the module doc).

    One per worker; :meth:`deliver` blocks the calling thread until the event is handled,
    so callers run it in their own threads (a pool per worker).
    """

    def __init__(
        self,
        invoker: Invoker,
        destinations: Destinations,
        *,
        stop: threading.Event,
        clock: Clock = utcnow,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        throttle_backoff: tuple[float, float] = retry.THROTTLE_BACKOFF,
        timeout: float = 900.0,
        statuses: status.StatusWriter | None = None,
    ) -> None:
        self.statuses = statuses
        self.invoker = invoker
        self.destinations = destinations
        self.stop = stop
        self.clock = clock
        self.retry_delays = retry_delays
        self.throttle_backoff = throttle_backoff
        self.timeout = timeout

    def deliver(
        self,
        target: Target,
        spec: trigger_api.AsyncDelivery,
        payload: bytes,
        *,
        request_id: str,
        first_seen: datetime.datetime,
        on_attempt: Callable[[Outcome], None] | None = None,
        alive: Callable[[], bool] = lambda: True,
        progress: Progress | None = None,
    ) -> Result:
        """Invokes, retries and dead-letters one event; returns once it is handled (or the
        worker stops, with ``handled`` False and the event's :class:`Progress`).

        ``alive`` is asked before each retry: once the Trigger is gone its events are
        dropped (logged) instead of retried for hours. ``progress`` resumes an event
        another worker started: its attempts count, and its next attempt waits until due.
        """
        policy = policy_of(spec, self.retry_delays, self.throttle_backoff)
        progress = progress or Progress()
        failures, throttles = progress.failures, progress.throttles
        condition: retry.Condition
        if progress.not_before is not None:
            wait = (progress.not_before - self.clock()).total_seconds()
            if wait > 0 and self.stop.wait(wait):
                return Result(False, False, failures + throttles, None, None, progress)
        while True:
            outcome = self.invoker.invoke(
                target.namespace,
                target.function,
                payload,
                request_id=request_id,
                timeout=self.timeout,
            )
            if on_attempt is not None:
                on_attempt(outcome)
            if self.statuses is not None:
                key = (target.namespace, target.trigger)
                self.statuses.set(key, delivering=status.verdict_of(outcome))
            kind = retry.trigger_kind(outcome.kind, outcome.status)
            throttles += kind == "throttled"
            failures += kind == "function-error"
            age = (self.clock() - first_seen).total_seconds()
            decision = retry.decide(policy, kind, failures=failures, throttles=throttles, age=age)
            if isinstance(decision, retry.Done):
                DELIVERED.labels(target.label, target.kind).inc()
                return Result(True, True, failures + throttles + 1, None, outcome)
            if isinstance(decision, retry.GiveUp):
                condition = decision.condition
                break
            RETRIED.labels(target.label, target.kind).inc()
            logger.info(
                "%s: attempt for %s failed (%s); retrying in %.1fs",
                target.label,
                request_id,
                outcome.describe(),
                decision.delay,
            )
            due = self.clock() + datetime.timedelta(seconds=decision.delay)
            if self.stop.wait(decision.delay):
                stopped = Progress(failures, throttles, due)
                return Result(False, False, failures + throttles, None, outcome, stopped)
            if not alive():
                logger.warning("%s: the Trigger is gone; dropping %s", target.label, request_id)
                return Result(True, False, failures + throttles, "TriggerDeleted", outcome)
        attempts = failures + throttles + (1 if condition == "Rejected" else 0)
        FAILED.labels(target.label, target.kind).inc()
        if spec.on_failure is None:
            logger.error(
                "%s: event %s failed (%s after %d attempts: %s) and the Trigger has no "
                "onFailure destination; it is dropped",
                target.label,
                request_id,
                condition,
                attempts,
                outcome.describe(),
            )
            return Result(True, False, attempts, condition, outcome)
        record = failure_record(
            target,
            request_id=request_id,
            payload=payload,
            condition=condition,
            attempts=attempts,
            outcome=outcome,
            now=self.clock(),
        )
        retention = max(datetime.timedelta(minutes=10), meta.parse_duration(spec.max_event_age))

        def give_up() -> str | None:
            if not alive():
                return "the Trigger was deleted"
            if self.clock() - first_seen > retention:
                return f"the event is older than {retention}"
            return None

        sent = send_until_stopped(
            self.destinations, target, spec.on_failure, record, stop=self.stop, give_up=give_up
        )
        return Result(sent, False, attempts, condition, outcome)


def send_until_stopped(
    destinations: Destinations,
    target: Target,
    destination: trigger_api.Destination,
    record: Mapping[str, Any],
    *,
    stop: threading.Event,
    key: bytes | None = None,
    give_up: Callable[[], str | None] = lambda: None,
) -> bool:
    """Sends a failure record, retrying an unreachable destination with backoff.

    Returns False only when the worker stops first (the event is then not acknowledged).
    ``give_up`` is asked between tries: a reason it returns (the Trigger was deleted, the
    event outlived its retention) ends the tries with the record logged and dropped, so a
    destination that never comes back cannot hold a worker forever.
    """
    first, cap = DESTINATION_BACKOFF
    tries = 0
    while True:
        try:
            destinations.send(target.namespace, destination, record, key)
        except DestinationError as exc:
            tries += 1
            delay = min(cap, first * 2 ** (tries - 1))
            logger.warning("%s: onFailure destination failed: %s", target.label, exc)
            if stop.wait(delay):
                return False
            reason = give_up()
            if reason is not None:
                logger.error(
                    "%s: dropping a failure record after %d tries (%s): %s",
                    target.label,
                    tries,
                    reason,
                    exc,
                )
                return True
            continue
        DEAD_LETTERED.labels(target.label, target.kind).inc()
        return True
