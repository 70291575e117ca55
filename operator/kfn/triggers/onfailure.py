"""On-failure destinations: where the record of an event the function never handled goes.

:class:`Destinations` sends a failure record (:func:`kfn.triggers.failure.failure_record`)
to the destination a Trigger names: a Function (invoked as an ``Event``), a Kafka topic or a
NATS subject, with credentials from the destination's Secret, read for every record and used
only where its owner allows (:func:`kfn.triggers.credentials.read_secret`).
:func:`send_until_stopped` retries an unreachable or refused destination with backoff until
the record is taken, the worker stops, or the record is given up (the Trigger was deleted,
the event outlived its retention); a refused Secret shows in the Trigger's Delivering
condition meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from kfn.api import endpoints, meta
from kfn.api import trigger as trigger_api
from kfn.triggers import credentials, failure, invoke, metrics, status

logger = logging.getLogger(__name__)

#: How long a failure record is retried when its destination is unreachable, between tries.
DESTINATION_BACKOFF: Final = (1.0, 30.0)


class DestinationError(Exception):
    """A failure record could not be sent; the message names the destination."""


class DestinationRefusedError(DestinationError):
    """The destination's Secret may not be sent there; nothing was. The message says why
    and what to ask of the Secret's owner."""


class Destinations:
    """Sends failure records to the destination a Trigger names."""

    def __init__(self, invoker: invoke.Invoker) -> None:
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
            self._to_function(
                namespace, destination.function.name, body, destination.function.target_qualifier
            )
        elif destination.kafka is not None:
            self._to_kafka(namespace, destination.kafka, body, key)
        elif destination.nats is not None:
            self._to_nats(namespace, destination.nats, body)
        else:  # pragma: no cover - the API requires exactly one
            raise DestinationError("the destination names nothing")

    def _to_function(self, namespace: str, function: str, body: bytes, qualifier: str) -> None:
        outcome = self.invoker.invoke(
            namespace,
            function,
            body,
            request_id=str(uuid.uuid4()),
            invocation_type="Event",
            qualifier=qualifier,
        )
        if outcome.status != 202:
            raise DestinationError(
                f"Function {namespace}/{function} did not accept the record: {outcome.describe()}"
            )

    def _producer(self, namespace: str, spec: trigger_api.KafkaDestination) -> Any:
        """The producer for a destination, its Secret read (and allowed) for every record,
        so a Secret whose owner withdrew the brokers is not used again."""
        import confluent_kafka  # noqa: PLC0415 - loaded only by workers that produce

        ref = spec.credentials_secret_ref
        secret = _secret(namespace, ref, endpoints.kafka(spec.bootstrap_servers))
        cache_key = json.dumps([namespace, spec.bootstrap_servers, ref.name if ref else None])
        with self._lock:
            producer = self._producers.get(cache_key)
            if producer is None:
                config = credentials.kafka_config(spec.bootstrap_servers, secret)
                config.update({"enable.idempotence": True, "acks": "all", "linger.ms": 5})
                producer = confluent_kafka.Producer(config)
                self._producers[cache_key] = producer
            return producer

    def _to_kafka(
        self, namespace: str, spec: trigger_api.KafkaDestination, body: bytes, key: bytes | None
    ) -> None:
        try:
            producer = self._producer(namespace, spec)
        except credentials.CredentialsError as exc:
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
        secret = _secret(namespace, spec.credentials_secret_ref, endpoints.nats(spec.servers))
        try:
            options = credentials.nats_options(secret)
        except credentials.CredentialsError as exc:
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


def _secret(
    namespace: str, ref: meta.LocalObjectReference | None, to: Sequence[endpoints.Endpoint]
) -> credentials.Secret | None:
    """A destination's Secret, read for the endpoints ``to``."""
    try:
        return credentials.read_secret(namespace, ref, to)
    except credentials.SecretNotAllowedError as exc:
        raise DestinationRefusedError(f"the onFailure destination's {exc}") from None
    except credentials.CredentialsError as exc:
        raise DestinationError(str(exc)) from None


async def _publish_nats(
    servers: list[str], subject: str, body: bytes, options: Mapping[str, Any]
) -> None:
    import nats  # noqa: PLC0415 - loaded only by workers that publish
    import nats.errors  # noqa: PLC0415
    import nats.js.errors  # noqa: PLC0415

    # One try (nats-py's max_reconnect_attempts=0 would mean forever): a server that turns
    # the credentials down fails this send, and send_until_stopped tries again later.
    client = await nats.connect(
        servers=servers, connect_timeout=5, allow_reconnect=False, **options
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


def send_until_stopped(
    destinations: Destinations,
    target: failure.Target,
    destination: trigger_api.Destination,
    record: Mapping[str, Any],
    *,
    stop: threading.Event,
    key: bytes | None = None,
    give_up: Callable[[], str | None] = lambda: None,
    statuses: status.StatusWriter | None = None,
) -> bool:
    """Sends a failure record, retrying an unreachable destination with backoff.

    Returns False only when the worker stops first (the event is then not acknowledged).
    ``give_up`` is asked between tries: a reason it returns (the Trigger was deleted, the
    event outlived its retention) ends the tries with the record logged and dropped, so a
    destination that never comes back cannot hold a worker forever. A destination whose
    Secret is refused is tried again too (its owner may allow it), and says so in the
    Trigger's Delivering condition through ``statuses``.
    """
    first, cap = DESTINATION_BACKOFF
    tries = 0
    while True:
        try:
            destinations.send(target.namespace, destination, record, key)
        except DestinationError as exc:
            tries += 1
            delay = min(cap, first * 2 ** (tries - 1))
            metrics.DESTINATION_DELIVERY_FAILURES.labels(
                target.namespace, target.trigger, target.kind
            ).inc()
            logger.warning("%s: onFailure destination failed: %s", target.label, exc)
            if isinstance(exc, DestinationRefusedError) and statuses is not None:
                message = f"{exc}; failure records wait until it is allowed"
                verdict = status.Verdict(False, trigger_api.Reason.SECRET_NOT_ALLOWED, message)
                statuses.set((target.namespace, target.trigger), delivering=verdict)
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
        metrics.DEAD_LETTERED.labels(target.namespace, target.trigger, target.kind).inc()
        return True
