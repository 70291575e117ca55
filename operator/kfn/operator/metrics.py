"""The operator's metrics: how long its handlers take, how often they fail, what waits, builds.

kopf measures nothing, so each handler kfn registers is wrapped by :func:`measured`, which
times every run and counts those that raised, by the kind of object it serves (``Function``
or ``Trigger``) and by the handler's name: a fixed set of labels, whatever the cluster holds.

``kfn_operator_queue_depth{kind}`` is what can be seen of kopf's backlog from the handlers:
the handler runs started and not yet finished, plus the objects whose change handler failed
and that kopf will run again after a delay (a Function waiting for a build slot or for the
API server). An object is counted from the failed run until its next run starts; kopf's own
queues of events not yet handed to a handler are invisible to it and are not counted.

Build metrics come from the build Jobs the operator sees finish (:mod:`kfn.operator.builds`
decides what each Job says, :func:`observe_build` records it): the phases'
durations of builds that succeeded, and the builds that failed by the phase they failed in.

Everything is in prometheus-client's default registry, which ``__main__`` serves on the
``metrics`` port.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Literal, ParamSpec, TypeVar

import kopf
import prometheus_client
from prometheus_client import core, registry

Kind = Literal["Function", "Trigger"]
KINDS: Final[tuple[Kind, ...]] = ("Function", "Trigger")
#: kopf's ``settings.execution.default_backoff``, which kfn keeps: how soon kopf runs a change
#: handler again after it raised anything but a ``TemporaryError`` (which names its own delay).
DEFAULT_BACKOFF: Final = 60.0
#: How long past its due time an object is still counted as waiting for its retry, in case kopf
#: never runs it again (someone removed the finalizer of a Function being retried).
RETRY_GRACE: Final = 60.0
#: The phases of a build (:mod:`kfn.builder`'s and the Job's steps), plus ``total``; a failure
#: no step claims (the Job's deadline, an eviction whose pod is gone) is ``unknown``.
BUILD_PHASES: Final = ("prepare", "check", "install", "push", "total")

RECONCILE_DURATION = prometheus_client.Histogram(
    "kfn_operator_reconcile_duration_seconds",
    "Time of one run of an operator handler (kopf), by the kind of object it serves.",
    ["kind", "handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECONCILE_ERRORS = prometheus_client.Counter(
    "kfn_operator_reconcile_errors",
    "Runs of an operator handler that raised (kopf retries or gives up, temporary or permanent).",
    ["kind", "handler"],
)
BUILD_DURATION = prometheus_client.Histogram(
    "kfn_build_duration_seconds",
    "Phases of builds that succeeded: prepare, install and push as the builder timed them "
    "(milliseconds), check and a Node.js install from the step's container times, total from "
    "the Job's start and completion times (both in whole seconds).",
    ["phase"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900),
)
BUILD_FAILURES = prometheus_client.Counter(
    "kfn_build_failures",
    "Builds that failed, by the phase they failed in (unknown: no step failed, e.g. the "
    "Job's deadline).",
    ["phase"],
)

P = ParamSpec("P")
R = TypeVar("R")


class Backlog:
    """Handler runs in progress and objects waiting for kopf to run them again, by kind.

    Thread-safe: kopf runs synchronous handlers on a pool of threads. ``clock`` is a parameter
    for tests (``time.monotonic`` otherwise).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._waiting: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}

    def started(self, kind: Kind, key: str | None) -> None:
        """A handler began for the object ``key`` (None: one kopf never retries)."""
        with self._lock:
            self._running[kind] += 1
            if key is not None:
                self._waiting[kind].pop(key, None)

    def finished(self, kind: Kind, key: str | None, retry_in: float | None) -> None:
        """The handler ended; ``retry_in``: kopf runs it again in that many seconds."""
        with self._lock:
            self._running[kind] -= 1
            if key is not None and retry_in is not None:
                self._waiting[kind][key] = self._clock() + max(retry_in, 0.0)

    def forget(self, kind: Kind, key: str) -> None:
        """The object is gone: nothing of it waits any more."""
        with self._lock:
            self._waiting[kind].pop(key, None)

    def depth(self, kind: Kind) -> int:
        """Runs in progress plus objects waiting for their retry (dropping any long overdue)."""
        now = self._clock()
        with self._lock:
            waiting = self._waiting[kind]
            for key in [k for k, due in waiting.items() if due + RETRY_GRACE < now]:
                del waiting[key]
            return self._running[kind] + len(waiting)


BACKLOG = Backlog()


class _QueueDepth(registry.Collector):
    """``kfn_operator_queue_depth``, read from :data:`BACKLOG` at each scrape."""

    def __init__(self, backlog: Backlog) -> None:
        self._backlog = backlog

    def collect(self) -> Iterator[core.Metric]:
        family = core.GaugeMetricFamily(
            "kfn_operator_queue_depth",
            "Objects the operator has not finished with: handler runs in progress plus objects "
            "whose change handler failed and that kopf runs again after a delay (until that "
            "run starts). Events kopf holds but has not handed to a handler are not counted.",
            labels=["kind"],
        )
        for kind in KINDS:
            family.add_metric([kind], self._backlog.depth(kind))
        yield family


prometheus_client.REGISTRY.register(_QueueDepth(BACKLOG))


def _key(kwargs: Mapping[str, Any]) -> str:
    """The object a handler serves, as kopf names it (its uid, else namespace/name)."""
    uid = kwargs.get("uid")
    if uid:
        return str(uid)
    return f"{kwargs.get('namespace') or ''}/{kwargs.get('name') or ''}"


def measured(
    kind: Kind, *, retried: bool = False, backlog: Backlog = BACKLOG
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Times a kopf handler and counts its failures; put it under kopf's decorators.

    ``retried``: kopf runs the handler again after it raised (create, update, resume and
    delete handlers): the object then counts as waiting until the next run starts. Event
    handlers are never retried. The wrapper keeps the handler's name (``functools.wraps``),
    which kopf's handler ids and progress annotations are made of. ``backlog`` is a parameter
    for tests.
    """

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        handler = fn.__name__
        duration = RECONCILE_DURATION.labels(kind, handler)
        errors = RECONCILE_ERRORS.labels(kind, handler)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            key = _key(kwargs) if retried else None
            retry_in: float | None = None
            backlog.started(kind, key)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except kopf.TemporaryError as exc:
                errors.inc()
                retry_in = exc.delay or 0.0
                raise
            except kopf.PermanentError:
                errors.inc()
                raise
            except Exception:
                errors.inc()
                retry_in = DEFAULT_BACKOFF
                raise
            finally:
                duration.observe(time.perf_counter() - started)
                backlog.finished(kind, key, retry_in)

        return run

    return wrap


@dataclasses.dataclass(frozen=True)
class BuildReport:
    """What one finished build Job says: its phases' durations in seconds (of a build that
    succeeded), or the phase it failed in."""

    durations: Mapping[str, float] = dataclasses.field(default_factory=dict)
    failed_in: str | None = None


def observe_build(report: BuildReport) -> None:
    """Records one finished build."""
    if report.failed_in is not None:
        BUILD_FAILURES.labels(report.failed_in).inc()
        return
    for phase, seconds in report.durations.items():
        BUILD_DURATION.labels(phase).observe(seconds)


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - the pod's port
    """Serves ``/metrics`` on ``port`` from a thread (the operator is no hot path)."""
    prometheus_client.start_http_server(port, address)
