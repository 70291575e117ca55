"""Reporting to the autoscaler: a :mod:`kfn.stats` message every second, and pokes.

Every period the reporter takes each throttler's numbers (time-weighted average
and peak in-flight, queued now, requests received) and each target's figures (invocations
answered, failures, handler durations: what a rollout judges a version on) and sends one
message listing the functions with any activity. A poke — the first request queued for a function
with no ready endpoint — is sent at once, on its own, so that scaling from zero
starts within milliseconds instead of up to a second later. A wake at zero is sent the same
way, its entry counting the wake (``"w"``) rather than a queued request: it asks the autoscaler
for ``activationScale`` pods and restarts the function's idle clock, and it is counted again in
the next period's message, so a lost send costs at most a second.

Sending never blocks the proxy: a failed or slow send is logged and dropped (the
next period carries fresh numbers anyway).

The autoscaler takes messages only from the activator's ServiceAccount: each carries the
activator's projected ServiceAccount token for the audience ``kfn-stats``
(:data:`kfn.stats.AUDIENCE`), read again as the kubelet rotates it
(:class:`kfn.authn.tokenfile.TokenFile`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Protocol

from kfn import stats
from kfn.activator import throttler as throttlers
from kfn.clock import Seconds

logger = logging.getLogger(__name__)


class Figures(Protocol):
    """A target's invocations, failures and duration bins since the last take."""

    def take_figures(self) -> tuple[int, int, dict[int, int]]: ...


class StatsSink(Protocol):
    async def send(self, message: stats.StatMessage) -> None: ...


#: How much of a refusal's body is read, to say in the log why the autoscaler refused.
ANSWER_LIMIT = 2048


class HttpStatsSink:
    """POSTs messages to the autoscaler's stats endpoint, one short connection each, with
    the bearer token ``token`` returns (read for each message; None: no token sent)."""

    def __init__(
        self, url: str, *, token: Callable[[], str] | None = None, timeout: float = 1.0
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"the autoscaler URL must be http://host[:port], got {url!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.path = parsed.path or stats.STATS_PATH
        self.token = token
        self.timeout = timeout

    async def send(self, message: stats.StatMessage) -> None:
        body = stats.encode(message)
        # A token that cannot be read (OSError) fails this message only; the file is read
        # again for the next one.
        authorization = f"Authorization: Bearer {self.token()}\r\n" if self.token else ""
        request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {stats.CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
            f"{authorization}Connection: close\r\n\r\n"
        ).encode() + body
        answer = b""
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(request)
                status_line = await reader.readline()
                parts = status_line.split(b" ", 2)
                if len(parts) < 2 or not parts[1].startswith(b"2"):
                    answer = await reader.read(ANSWER_LIMIT)
            finally:
                writer.close()
        if len(parts) < 2 or not parts[1].startswith(b"2"):
            _, _, said = answer.partition(b"\r\n\r\n")
            raise OSError(f"the autoscaler answered {status_line.strip()!r}: {said[:300]!r}")


class StatsReporter:
    """Builds and sends the activator's stats messages."""

    def __init__(
        self,
        activator_id: str,
        throttlers_of: Callable[[], Mapping[stats.FunctionKey, throttlers.Throttler]],
        sink: StatsSink,
        *,
        clock: Seconds = time.time,
        figures_of: Callable[[], Mapping[stats.FunctionKey, Figures]] = dict,
    ) -> None:
        self.activator_id = activator_id
        self.throttlers_of = throttlers_of
        #: Each target's counters of invocations, failures and durations
        #: (:class:`kfn.activator.metrics.FunctionMetrics`), taken every period.
        self.figures_of = figures_of
        self.sink = sink
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def build(self) -> stats.StatMessage:
        """The message for the period that ends now (resets the throttlers' periods)."""
        functions = []
        figures = self.figures_of()
        for key, throttle in list(self.throttlers_of().items()):
            average, peak, queued, requests = throttle.take_period()
            wakes = throttle.take_wakes()
            counted = figures.get(key)
            invocations, errors, durations = counted.take_figures() if counted else (0, 0, {})
            if average or peak or queued or requests or invocations or wakes:
                functions.append(
                    stats.FunctionStat(
                        key, average, peak, queued, requests, invocations, errors, durations, wakes
                    )
                )
        return stats.StatMessage(self.activator_id, self.clock(), tuple(functions))

    def build_poke(self, function: stats.FunctionKey) -> stats.StatMessage:
        throttle = self.throttlers_of().get(function)
        in_flight = throttle.in_flight if throttle else 0
        queued = throttle.queued if throttle else 1
        # A poke stands for at least the request that made it, queued or (once a warm pool's
        # pod took it: kfn.activator.pools) in flight; never for it twice.
        wanted = max(queued, 0 if in_flight else 1)
        stat = stats.FunctionStat(function, float(in_flight), in_flight, wanted, 0)
        return stats.StatMessage(self.activator_id, self.clock(), (stat,), poke=True)

    def build_wake(self, function: stats.FunctionKey) -> stats.StatMessage:
        """The poke of a wake: nothing queued on its account, one wake."""
        throttle = self.throttlers_of().get(function)
        in_flight = throttle.in_flight if throttle else 0
        queued = throttle.queued if throttle else 0
        stat = stats.FunctionStat(function, float(in_flight), in_flight, queued, 0, wakes=1)
        return stats.StatMessage(self.activator_id, self.clock(), (stat,), poke=True)

    def wake(self, function: stats.FunctionKey) -> None:
        """Called by a throttler woken at zero: send at once."""
        self._send_soon(self.build_wake(function))

    def poke(self, function: stats.FunctionKey) -> None:
        """Called by a throttler when a request queues at zero: send at once."""
        self._send_soon(self.build_poke(function))

    def _send_soon(self, message: stats.StatMessage) -> None:
        task = asyncio.get_running_loop().create_task(self._send(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, message: stats.StatMessage) -> None:
        try:
            await self.sink.send(message)
        except (OSError, TimeoutError) as exc:
            logger.warning("sending stats failed: %r", exc)

    async def run(self, interval: float = 1.0) -> None:
        """Report every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self._send_soon(self.build())
