"""The activator's Prometheus metrics, cheap to update on the hot path.

prometheus-client's labelled metrics take a lock and a label lookup per update.
Here the hot path only bumps plain integers in a per-function object; a collector
turns them into the conventional metric families when ``/metrics`` is scraped.
Gauges (queue depth, in-flight) are read from the throttlers at scrape time.

The page is prometheus-client's own exposition (``generate_latest``), served from
the activator's event loop by a few lines that answer one request per connection.
prometheus-client's HTTP server (what the trigger workers run) was measured
against it (``bench/README-activator.md``): its thread per scrape and WSGI
handling cost about twice the CPU per scrape, which the proxy's requests lose,
and its thread would read the loop's state while the loop changes it.

Exported (labels ``namespace``, ``function`` and ``version`` on all per-function series;
``version`` is ``$LATEST`` or a published version's number, and only versions something routes
to are served, so a function has at most its aliases' versions and ``$LATEST``)::

    kfn_function_invocations_total                       counter   sent to a pod and answered
    kfn_function_errors_total{kind}                      counter   see :func:`classify`
    kfn_function_duration_seconds                        histogram the handler's own time
    kfn_function_concurrent_executions                   gauge     requests in a pod now
    kfn_function_cold_starts_total                       counter   once each, answered or given up
    kfn_function_cold_start_timeouts_total               counter   given up before a pod was ready
    kfn_function_cold_start_duration_seconds             histogram queued at zero -> first byte
    kfn_function_cold_start_phase_seconds{phase}         histogram :mod:`.cold_start`
    kfn_function_ready_endpoints                         gauge
    kfn_function_async_events_received_total            counter   Event invocations accepted
    kfn_function_async_event_age_seconds                 histogram accepted -> each attempt
    kfn_function_async_events_dropped_total{reason}      counter   given up, by condition
    kfn_function_destination_delivery_failures_total     counter
    kfn_function_dead_letter_errors_total                counter
    kfn_activator_requests_total{code}                   counter   every answer, by status
    kfn_activator_request_duration_seconds               histogram head -> end, queueing included
    kfn_activator_queue_depth                            gauge
    kfn_activator_queue_capacity                         gauge     the queue's bound
    kfn_activator_retries_total                          counter
    kfn_activator_events_redelivered_total               counter
    kfn_activator_buffered_bytes                         gauge     (no labels) bytes held now
    kfn_activator_warm_pool_specialisations_total{outcome} counter warm pools' offers, by end

A function's series go when the catalog sees it deleted (:meth:`Metrics.forget`, called as
the activator drops the function): its throttler's gauges went with the throttler. Events
of a function deleted while they waited end as ``ResourceNotFound`` after it: those alone
are still counted (``kfn_function_async_events_dropped_total`` of the deleted function, its
only series, until the function is added again or the activator restarts), since nothing
else tells an operator that they were dropped.

The handler's duration is the runtime's ``Kfn-Handler-Duration`` (runtime contract), read
and dropped by :mod:`~kfn.activator.upstream`; an answer without it (a streamed one whose
runtime sent no trailer, an init error) observes none. The on-failure destination is the
only destination ``Event`` invocations have: a delivery to it that fails counts both as a
destination delivery failure and as a dead-letter error.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import typing
from collections.abc import Callable, Iterator, Mapping

import prometheus_client
from prometheus_client import core, registry

from kfn import rollout, stats
from kfn.activator import cold_start
from kfn.activator import throttler as throttlers

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
HANDLER_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900
)  # fmt: skip
COLD_START_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
PHASE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
EVENT_AGE_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600)

#: The kinds of ``kfn_function_errors_total`` (a fixed set).
ERROR_KINDS = (
    "function",
    "timeout",
    "init",
    "out_of_memory",
    "exit",
    "throttled",
    "unavailable",
)
Kind = typing.Literal[
    "function", "timeout", "init", "out_of_memory", "exit", "throttled", "unavailable"
]
#: The kinds that count against a version in a rollout: failures of the function a caller sees
#: (not a throttle, nor no pod reached: the version's code did not run).
FAILURE_KINDS: typing.Final = frozenset({"function", "timeout", "init", "out_of_memory", "exit"})
#: What a runtime's 502 with ``Kfn-Function-Error`` is when its errorType is none of these:
#: the init error (runtime contract §3).
_NOT_INIT = frozenset({"ResponseSizeTooLarge", "Runtime.ExitError", "Runtime.OutOfMemory"})


def classify(
    status: int, *, function_error: bool, error_type: str = "", own: bool = False
) -> Kind | None:
    """The error kind of one answer, or None when it is no error (Lambda's rules).

    ``own``: the activator answered itself (``error_type`` from its Lambda-shaped body);
    else the pod did, ``function_error`` telling whether it carried ``Kfn-Function-Error``
    and ``error_type`` the errorType of its body when known. A handler that *returns* a 5xx
    carries no ``Kfn-Function-Error``: no error. The activator's own ``Runtime.*`` answers
    (the process died mid-request) are function errors too.
    """
    died = _DIED.get(error_type)
    if died is not None:
        return died
    if own:
        return _own_kind(status, error_type)
    if not function_error:
        return None
    if status == 504:
        return "timeout"
    if error_type.startswith("Runtime.Init") or (status == 502 and error_type not in _NOT_INIT):
        return "init"
    return "function"


_DIED: dict[str, Kind] = {"Runtime.OutOfMemory": "out_of_memory", "Runtime.ExitError": "exit"}


def _own_kind(status: int, error_type: str) -> Kind | None:
    """An answer of the activator's own: a refusal (throttled), the function's timeout, or no
    pod reached in time (unavailable; status 0: no pod took the connection)."""
    if status == 429 or error_type == "TooManyRequestsException":
        return "throttled"
    if error_type == "TimeoutError":
        return "timeout"
    if status >= 500 or status == 0:
        return "unavailable"
    return None


def error_type(body: bytes) -> str:
    """The ``errorType`` of a Lambda-shaped error body (or its beginning), else ""."""
    at = body.find(b'"errorType"')
    if at < 0:
        return ""
    colon = body.find(b":", at)
    start = body.find(b'"', colon + 1)
    end = body.find(b'"', start + 1)
    if colon < 0 or start < 0 or end < 0:
        return ""
    try:
        value = json.loads(body[start : end + 1])
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        result: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            result.append((_float(bound), running))
        result.append(("+Inf", running + self.counts[-1]))
        return result


class FunctionMetrics:
    """Counters of one function; updated with plain arithmetic."""

    __slots__ = (
        "codes",
        "cold_start_durations",
        "cold_start_phases",
        "cold_start_timeouts",
        "cold_starts",
        "dead_letter_errors",
        "destination_failures",
        "durations",
        "errors",
        "event_ages",
        "events_dropped",
        "events_received",
        "events_redelivered",
        "handler_durations",
        "invocations",
        "period_durations",
        "period_errors",
        "period_invocations",
        "retries",
    )

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.durations = _Histogram(REQUEST_BUCKETS)
        self.invocations = 0
        self.errors: dict[str, int] = {}
        self.handler_durations = _Histogram(HANDLER_BUCKETS)
        self.cold_starts = 0
        self.cold_start_timeouts = 0
        self.cold_start_durations = _Histogram(COLD_START_BUCKETS)
        self.cold_start_phases = {
            phase: _Histogram(PHASE_BUCKETS) for phase in (*cold_start.PHASES, cold_start.OTHER)
        }
        self.retries = 0
        self.events_received = 0
        self.event_ages = _Histogram(EVENT_AGE_BUCKETS)
        self.events_dropped: dict[str, int] = {}
        self.events_redelivered = 0
        self.destination_failures = 0
        self.dead_letter_errors = 0
        #: The period's figures for the stats message (what a rollout judges a version on):
        #: invocations answered by a pod, those that failed as the function's fault, and
        #: their handler durations by :func:`kfn.rollout.duration_bin`; taken and reset by
        #: :meth:`take_figures`.
        self.period_invocations = 0
        self.period_errors = 0
        self.period_durations: dict[int, int] = {}

    def observe_request(self, code: int, seconds: float) -> None:
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        # _Histogram.observe, inline: every request passes here.
        durations = self.durations
        durations.counts[bisect.bisect_left(durations.bounds, seconds)] += 1
        durations.total += seconds

    def invoked(self, handler_seconds: float, kind: Kind | None = None) -> None:
        """A pod answered an invocation; its handler took ``handler_seconds`` (< 0: unknown)
        and it failed with error ``kind`` (None: no error; counted apart by :meth:`failed`,
        this only tells the period's figures)."""
        self.invocations += 1
        self.period_invocations += 1
        if kind is not None and kind in FAILURE_KINDS:
            self.period_errors += 1
        if handler_seconds >= 0:
            handler = self.handler_durations
            handler.counts[bisect.bisect_left(handler.bounds, handler_seconds)] += 1
            handler.total += handler_seconds
            index = rollout.duration_bin(handler_seconds)
            durations = self.period_durations
            durations[index] = durations.get(index, 0) + 1

    def take_figures(self) -> tuple[int, int, dict[int, int]]:
        """The period's invocations, failures and duration bins; a new period begins."""
        figures = (self.period_invocations, self.period_errors, self.period_durations)
        self.period_invocations = self.period_errors = 0
        self.period_durations = {}
        return figures

    def called(
        self, status: int, body: bytes, *, function_error: bool, sent: bool, handler_seconds: float
    ) -> None:
        """One of the activator's own invocations (``Event`` deliveries, Lambda's Invoke)
        ended: ``sent`` when a pod ran it, else the activator answered (throttled, or no pod
        reached)."""
        kind: Kind | None = None
        if function_error or status >= 429 or status == 0:
            kind = classify(
                status, function_error=function_error, error_type=error_type(body), own=not sent
            )
        if sent:
            self.invoked(handler_seconds, kind)
        if kind is not None:
            self.failed(kind)

    def failed(self, kind: Kind) -> None:
        errors = self.errors
        errors[kind] = errors.get(kind, 0) + 1

    def retried(self) -> None:
        """A pod refused a request without starting it; it is being sent again."""
        self.retries += 1

    def observe_cold_start(self, decided: cold_start.Phases | None, count: bool = True) -> None:
        """A cold start counted (``count``) and, once its paying request was answered, its
        phases; ``decided`` None: a request gave up waiting for it before any pod was ready."""
        if count:
            self.cold_starts += 1
        if decided is None:
            self.cold_start_timeouts += 1
            return
        self.cold_start_durations.observe(decided.total)
        for phase, seconds in decided.durations.items():
            self.cold_start_phases[phase].observe(seconds)


class Metrics:
    """All functions' metrics, exposed through a prometheus-client collector."""

    def __init__(
        self,
        throttlers_of: Callable[[], Mapping[stats.FunctionKey, throttlers.Throttler]],
        held_bytes: Callable[[], int] = lambda: 0,
        pool_outcomes: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.throttlers_of = throttlers_of
        #: The bytes the activator holds now (queued bodies, answers not yet written).
        self.held_bytes = held_bytes
        #: How the warm pools' specialisations ended, by outcome (kfn.activator.pools).
        self.pool_outcomes = pool_outcomes
        self.functions: dict[stats.FunctionKey, FunctionMetrics] = {}
        #: Functions deleted (and not added again): what still happens to their events
        #: gives them no series again, but for the events dropped (see the module doc).
        self.deleted: set[stats.FunctionKey] = set()
        #: Events of deleted functions dropped since, by function and reason.
        self.dropped_after: dict[tuple[stats.FunctionKey, str], int] = {}
        self.registry = registry.CollectorRegistry()
        self.registry.register(_Collector(self))

    def of(self, function: stats.FunctionKey) -> FunctionMetrics:
        """The function's metrics, made when it is first seen (or added again)."""
        found = self.functions.get(function)
        if found is None:
            found = self.functions[function] = FunctionMetrics()
            if function in self.deleted:
                self.deleted.discard(function)
                for key in [k for k in self.dropped_after if k[0] == function]:
                    del self.dropped_after[key]
        return found

    def forget(self, function: stats.FunctionKey) -> None:
        """The function was deleted: its series go."""
        self.functions.pop(function, None)
        self.deleted.add(function)

    def _counted(self, function: stats.FunctionKey) -> FunctionMetrics | None:
        """Where an event of ``function`` counts: nowhere once it was deleted."""
        return None if function in self.deleted else self.of(function)

    def cold_start(
        self, function: stats.FunctionKey, decided: cold_start.Phases | None, count: bool = True
    ) -> None:
        found = self._counted(function)
        if found is not None:
            found.observe_cold_start(decided, count)

    # --- asynchronous invocations (async_invoke.Counters) ------------------------------------

    def event_received(self, function: stats.FunctionKey) -> None:
        found = self._counted(function)
        if found is not None:
            found.events_received += 1

    def event_attempted(self, function: stats.FunctionKey, age: float) -> None:
        found = self._counted(function)
        if found is not None:
            found.event_ages.observe(max(0.0, age))

    def event_dropped(self, function: stats.FunctionKey, reason: str) -> None:
        found = self._counted(function)
        if found is not None:
            found.events_dropped[reason] = found.events_dropped.get(reason, 0) + 1
        else:
            key = (function, reason)
            self.dropped_after[key] = self.dropped_after.get(key, 0) + 1

    def event_redelivered(self, function: stats.FunctionKey) -> None:
        found = self._counted(function)
        if found is not None:
            found.events_redelivered += 1

    def destination_failed(self, function: stats.FunctionKey) -> None:
        found = self._counted(function)
        if found is not None:
            found.destination_failures += 1
            found.dead_letter_errors += 1

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


_FN = ["namespace", "function", "version"]
#: The ``version`` label of a function's ``$LATEST`` series.
LATEST = "$LATEST"


def _labels(function: stats.FunctionKey) -> list[str]:
    return [function.namespace, function.name, function.version or LATEST]


class _Collector(registry.Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def _cold_starts(self) -> list[core.Metric]:
        """The cold-start families, per function."""
        cold = core.CounterMetricFamily(
            "kfn_function_cold_starts",
            "Cold starts: a request waited while the function had no ready pod.",
            labels=_FN,
        )
        cold_timeouts = core.CounterMetricFamily(
            "kfn_function_cold_start_timeouts",
            "Cold starts a waiting request gave up on (queue timeout) before a pod was ready.",
            labels=_FN,
        )
        cold_durations = core.HistogramMetricFamily(
            "kfn_function_cold_start_duration_seconds",
            "From the first request queued at zero to the first byte of its answer.",
            labels=_FN,
        )
        cold_phases = core.HistogramMetricFamily(
            "kfn_function_cold_start_phase_seconds",
            "The phases of cold starts (other: what no source measured).",
            labels=[*_FN, "phase"],
        )
        for function, fm in list(self._metrics.functions.items()):
            fn = _labels(function)
            cold.add_metric(fn, fm.cold_starts)
            cold_timeouts.add_metric(fn, fm.cold_start_timeouts)
            cold_durations.add_metric(
                fn, fm.cold_start_durations.buckets(), fm.cold_start_durations.total
            )
            if fm.cold_starts:
                for phase, histogram in fm.cold_start_phases.items():
                    cold_phases.add_metric([*fn, phase], histogram.buckets(), histogram.total)
        return [cold, cold_timeouts, cold_durations, cold_phases]

    def collect(self) -> Iterator[core.Metric]:
        invocations = core.CounterMetricFamily(
            "kfn_function_invocations",
            "Invocations sent to a pod and answered (refusals and throttles excluded).",
            labels=_FN,
        )
        errors = core.CounterMetricFamily(
            "kfn_function_errors",
            "Invocations that failed, by kind (a handler returning a 5xx is no error).",
            labels=[*_FN, "kind"],
        )
        handler = core.HistogramMetricFamily(
            "kfn_function_duration_seconds",
            "The handler's own time, as its runtime measured it (Kfn-Handler-Duration).",
            labels=_FN,
        )
        received = core.CounterMetricFamily(
            "kfn_function_async_events_received",
            "Event invocations accepted (202).",
            labels=_FN,
        )
        ages = core.HistogramMetricFamily(
            "kfn_function_async_event_age_seconds",
            "From an Event invocation's acceptance to each attempt to hand it to a pod.",
            labels=_FN,
        )
        dropped = core.CounterMetricFamily(
            "kfn_function_async_events_dropped",
            "Event invocations given up (to the on-failure destination), by reason.",
            labels=[*_FN, "reason"],
        )
        destination = core.CounterMetricFamily(
            "kfn_function_destination_delivery_failures",
            "Deliveries to a destination that failed.",
            labels=_FN,
        )
        dead_letter = core.CounterMetricFamily(
            "kfn_function_dead_letter_errors",
            "Deliveries to the on-failure destination that failed.",
            labels=_FN,
        )
        requests = core.CounterMetricFamily(
            "kfn_activator_requests",
            "Requests answered by the activator, by function and status code.",
            labels=[*_FN, "code"],
        )
        durations = core.HistogramMetricFamily(
            "kfn_activator_request_duration_seconds",
            "Time from a request's head to the end of its response, queueing included.",
            labels=_FN,
        )
        retries = core.CounterMetricFamily(
            "kfn_activator_retries",
            "Requests sent again because a pod refused them unstarted (busy or draining).",
            labels=_FN,
        )
        redelivered = core.CounterMetricFamily(
            "kfn_activator_events_redelivered",
            "Event invocations the store handed out again after a holder lost them "
            "(each may have run twice).",
            labels=_FN,
        )
        for (function, reason), count in sorted(self._metrics.dropped_after.items()):
            dropped.add_metric([*_labels(function), reason], count)
        for function, fm in list(self._metrics.functions.items()):
            fn = _labels(function)
            invocations.add_metric(fn, fm.invocations)
            for kind in ERROR_KINDS:
                errors.add_metric([*fn, kind], fm.errors.get(kind, 0))
            handler.add_metric(fn, fm.handler_durations.buckets(), fm.handler_durations.total)
            received.add_metric(fn, fm.events_received)
            ages.add_metric(fn, fm.event_ages.buckets(), fm.event_ages.total)
            for reason, count in sorted(fm.events_dropped.items()):
                dropped.add_metric([*fn, reason], count)
            destination.add_metric(fn, fm.destination_failures)
            dead_letter.add_metric(fn, fm.dead_letter_errors)
            for code, count in sorted(fm.codes.items()):
                requests.add_metric([*fn, str(code)], count)
            durations.add_metric(fn, fm.durations.buckets(), fm.durations.total)
            retries.add_metric(fn, fm.retries)
            redelivered.add_metric(fn, fm.events_redelivered)
        concurrent = core.GaugeMetricFamily(
            "kfn_function_concurrent_executions", "Requests being served by pods.", labels=_FN
        )
        ready = core.GaugeMetricFamily(
            "kfn_function_ready_endpoints",
            "Pods the activator routes the function's requests to.",
            labels=_FN,
        )
        queue = core.GaugeMetricFamily(
            "kfn_activator_queue_depth", "Requests waiting for capacity.", labels=_FN
        )
        capacity = core.GaugeMetricFamily(
            "kfn_activator_queue_capacity",
            "How many requests the function's queue holds at most.",
            labels=_FN,
        )
        for function, throttler in list(self._metrics.throttlers_of().items()):
            fn = _labels(function)
            concurrent.add_metric(fn, throttler.in_flight)
            ready.add_metric(fn, throttler.ready_endpoints)
            queue.add_metric(fn, throttler.queued)
            capacity.add_metric(fn, throttler.queue_limit)
        held = core.GaugeMetricFamily(
            "kfn_activator_buffered_bytes",
            "Request and response bytes the activator holds in memory now.",
        )
        held.add_metric([], self._metrics.held_bytes())
        pools = core.CounterMetricFamily(
            "kfn_activator_warm_pool_specialisations",
            "Functions at zero offered a warm pool's pod, by how it ended (specialised, "
            "no_idle_pod, other_base, unresolvable, refused, taken, error).",
            labels=["outcome"],
        )
        for outcome, count in sorted(self._metrics.pool_outcomes().items()):
            pools.add_metric([outcome], count)
        yield from (invocations, errors, handler, concurrent)
        yield from self._cold_starts()
        yield from (ready, received, ages, dropped, destination, dead_letter)
        yield from (requests, durations, queue, capacity, retries, redelivered, held, pools)


def _float(value: float) -> str:
    return repr(float(value))


class _MetricsProtocol(asyncio.Protocol):
    """Answers a request with the metrics page and closes (scrapes are rare)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self._transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > 65536:
                self._transport.close()
            return
        request_line = self._buffer.split(b"\r\n", 1)[0]
        parts = request_line.split(b" ")
        if len(parts) == 3 and parts[1].split(b"?")[0] == b"/metrics":
            body = self._metrics.render()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n" % (
                prometheus_client.CONTENT_TYPE_LATEST.encode()
            )
        else:
            body = b"not found\n"
            head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
        head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        self._transport.write(head + body)
        self._transport.close()


async def serve(metrics: Metrics, host: str, port: int) -> asyncio.base_events.Server:
    """Serve ``/metrics`` on its own port, apart from the proxy's traffic."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _MetricsProtocol(metrics), host, port)
