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

Exported::

    kfn_activator_requests_total{function,code}            counter
    kfn_activator_request_duration_seconds{function}       histogram
    kfn_activator_cold_starts_total{function}              counter
    kfn_activator_cold_start_duration_seconds{function}    histogram
    kfn_activator_queue_depth{function}                    gauge
    kfn_activator_in_flight{function}                      gauge
    kfn_activator_retries_total{function}                  counter
    kfn_activator_ready_endpoints{function}                gauge
    kfn_activator_events_failed_total{function,condition}  counter
    kfn_activator_events_redelivered_total{function}       counter

Events given up (``condition``: RetriesExhausted, EventAgeExceeded, Rejected,
ResourceNotFound) are counted apart from the per-function objects, since a deleted
function's events end after the function is gone.
"""

from __future__ import annotations

import asyncio
import bisect
import typing
from collections.abc import Callable, Iterator, Mapping

import prometheus_client
from prometheus_client import core, registry

from kfn import stats
from kfn.activator import throttler as throttlers

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
COLD_START_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


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

    __slots__ = ("codes", "cold_start_durations", "cold_starts", "durations", "retries")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.durations = _Histogram(REQUEST_BUCKETS)
        self.cold_starts = 0
        self.cold_start_durations = _Histogram(COLD_START_BUCKETS)
        self.retries = 0

    def observe_request(self, code: int, seconds: float) -> None:
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        # _Histogram.observe, inline: every request passes here.
        durations = self.durations
        durations.counts[bisect.bisect_left(durations.bounds, seconds)] += 1
        durations.total += seconds

    def retried(self) -> None:
        """A pod refused a request without starting it; it is being sent again."""
        self.retries += 1

    def observe_cold_start(self, seconds: float) -> None:
        self.cold_starts += 1
        self.cold_start_durations.observe(seconds)


class Metrics:
    """All functions' metrics, exposed through a prometheus-client collector."""

    def __init__(
        self, throttlers_of: Callable[[], Mapping[stats.FunctionKey, throttlers.Throttler]]
    ) -> None:
        self.throttlers_of = throttlers_of
        self.functions: dict[stats.FunctionKey, FunctionMetrics] = {}
        #: ``Event`` invocations given up, by function and condition.
        self.events_failed: dict[tuple[stats.FunctionKey, str], int] = {}
        #: ``Event`` invocations the store handed out again after a holder lost them.
        self.events_redelivered: dict[stats.FunctionKey, int] = {}
        self.registry = registry.CollectorRegistry()
        self.registry.register(_Collector(self))

    def of(self, function: stats.FunctionKey) -> FunctionMetrics:
        found = self.functions.get(function)
        if found is None:
            found = self.functions[function] = FunctionMetrics()
        return found

    def cold_start(self, function: stats.FunctionKey, seconds: float) -> None:
        self.of(function).observe_cold_start(seconds)

    def event_failed(self, function: stats.FunctionKey, condition: str) -> None:
        key = (function, condition)
        self.events_failed[key] = self.events_failed.get(key, 0) + 1

    def event_redelivered(self, function: stats.FunctionKey) -> None:
        self.events_redelivered[function] = self.events_redelivered.get(function, 0) + 1

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class _Collector(registry.Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[core.Metric]:
        requests = core.CounterMetricFamily(
            "kfn_activator_requests",
            "Requests answered by the activator, by function and status code.",
            labels=["function", "code"],
        )
        durations = core.HistogramMetricFamily(
            "kfn_activator_request_duration_seconds",
            "Time from a request's head to the end of its response, queueing included.",
            labels=["function"],
        )
        cold = core.CounterMetricFamily(
            "kfn_activator_cold_starts",
            "Times a request waited for a function with no ready endpoint.",
            labels=["function"],
        )
        cold_durations = core.HistogramMetricFamily(
            "kfn_activator_cold_start_duration_seconds",
            "Time from the first request queued at zero to the first ready endpoint.",
            labels=["function"],
        )
        retries = core.CounterMetricFamily(
            "kfn_activator_retries",
            "Requests sent again because a pod refused them unstarted (busy or draining).",
            labels=["function"],
        )
        for function, fm in list(self._metrics.functions.items()):
            name = str(function)
            retries.add_metric([name], fm.retries)
            for code, count in sorted(fm.codes.items()):
                requests.add_metric([name, str(code)], count)
            durations.add_metric([name], fm.durations.buckets(), fm.durations.total)
            cold.add_metric([name], fm.cold_starts)
            cold_durations.add_metric(
                [name], fm.cold_start_durations.buckets(), fm.cold_start_durations.total
            )
        queue = core.GaugeMetricFamily(
            "kfn_activator_queue_depth", "Requests waiting for capacity.", labels=["function"]
        )
        in_flight = core.GaugeMetricFamily(
            "kfn_activator_in_flight", "Requests being served by pods.", labels=["function"]
        )
        ready = core.GaugeMetricFamily(
            "kfn_activator_ready_endpoints",
            "Pods the activator routes the function's requests to.",
            labels=["function"],
        )
        for function, throttler in list(self._metrics.throttlers_of().items()):
            queue.add_metric([str(function)], throttler.queued)
            in_flight.add_metric([str(function)], throttler.in_flight)
            ready.add_metric([str(function)], throttler.ready_endpoints)
        failed = core.CounterMetricFamily(
            "kfn_activator_events_failed",
            "Event invocations given up and handed to the on-failure destination, by condition.",
            labels=["function", "condition"],
        )
        for (function, condition), count in sorted(
            self._metrics.events_failed.items(), key=lambda item: (str(item[0][0]), item[0][1])
        ):
            failed.add_metric([str(function), condition], count)
        redelivered = core.CounterMetricFamily(
            "kfn_activator_events_redelivered",
            "Event invocations the store handed out again after a holder lost them "
            "(each may have run twice).",
            labels=["function"],
        )
        for function, count in sorted(
            self._metrics.events_redelivered.items(), key=lambda item: str(item[0])
        ):
            redelivered.add_metric([str(function)], count)
        yield from (requests, durations, cold, cold_durations, queue, in_flight, retries, ready)
        yield from (failed, redelivered)


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
