"""Lambda's asynchronous delivery, run in the trigger worker: retry, then onFailure.

:class:`AsyncDeliverer` gives cron ticks and bucket notifications Lambda's asynchronous
semantics *in the trigger worker* rather than in the activator's memory: the worker
invokes synchronously (:mod:`kfn.triggers.invoke`) and retries under :mod:`kfn.retry` (the
Trigger's ``delivery``; a missing function is held like throttling, so a Function created
just after its Trigger loses nothing), then sends the event's failure record to its
``onFailure`` destination (:mod:`kfn.triggers.onfailure`). It returns only once the event
is handled, so the source (a bucket notification, a cron tick) is acknowledged only after
that: nothing is lost when a worker or an activator dies in between; at worst an event is
delivered twice. Stream triggers invoke synchronously and retry batches themselves
(:mod:`kfn.triggers.stream.runner`).

A worker that stops mid-retry returns the event unhandled with its :class:`Progress`, so
another worker can go on under the same policy.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import threading
from collections.abc import Callable
from typing import Final

from kfn import retry
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.clock import Clock, utcnow
from kfn.triggers import failure, invoke, metrics, onfailure, status

logger = logging.getLogger(__name__)


#: Lambda's retry delays for function errors; workers may shorten them (KFN_ASYNC_RETRY_DELAYS).
DEFAULT_RETRY_DELAYS: Final = retry.LAMBDA_RETRY_DELAYS


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
    outcome: retry.Outcome | None = None
    progress: Progress | None = None


class AsyncDeliverer:
    """Delivers events under a Trigger's ``delivery`` policy (see the module doc).

    One per worker; :meth:`deliver` blocks the calling thread until the event is handled,
    so callers run it in their own threads (a pool per worker).
    """

    def __init__(
        self,
        invoker: invoke.Invoker,
        destinations: onfailure.Destinations,
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
        target: failure.Target,
        spec: trigger_api.AsyncDelivery,
        payload: bytes,
        *,
        request_id: str,
        first_seen: datetime.datetime,
        on_attempt: Callable[[retry.Outcome], None] | None = None,
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
                qualifier=target.qualifier,
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
                metrics.DELIVERED.labels(target.namespace, target.trigger, target.kind).inc()
                return Result(True, True, failures + throttles + 1, None, outcome)
            if isinstance(decision, retry.GiveUp):
                condition = decision.condition
                break
            metrics.RETRIED.labels(target.namespace, target.trigger, target.kind).inc()
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
        metrics.FAILED.labels(target.namespace, target.trigger, target.kind).inc()
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
        record = failure.failure_record(
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

        sent = onfailure.send_until_stopped(
            self.destinations, target, spec.on_failure, record,
            stop=self.stop, give_up=give_up, statuses=self.statuses,
        )  # fmt: skip
        return Result(sent, False, attempts, condition, outcome)
