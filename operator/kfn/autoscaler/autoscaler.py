"""The autoscaler's loop: receive stats, decide every second, act through a Scaler.

Deciding is :func:`kfn.autoscaler.scaling.decide`; this class only keeps the state
between decisions (the stats window, the last decision per function), calls the
:class:`kfn.autoscaler.scaler.Scaler` and exports each decision
(:mod:`kfn.autoscaler.metrics`). Time is passed into every method, so tests
drive it without sleeping; :meth:`Autoscaler.run` supplies the real clock.
"""

from __future__ import annotations

import asyncio
import logging
import time

from kfn import clock as clock_
from kfn import stats
from kfn.autoscaler import metrics, scaling
from kfn.autoscaler import scaler as scalers

logger = logging.getLogger(__name__)


class Autoscaler:
    """Scales the functions it has a :class:`ScaleSpec` for."""

    def __init__(
        self,
        scaler: scalers.Scaler,
        *,
        stale_after: float = 3.0,
        clock: clock_.Seconds = time.monotonic,
    ) -> None:
        self.scaler = scaler
        self.clock = clock
        self.window = scaling.StatsWindow(stale_after=stale_after)
        self.specs: dict[stats.FunctionKey, scaling.ScaleSpec] = {}
        self.decisions: dict[stats.FunctionKey, scaling.Decision] = {}
        self._retention = 60.0
        #: When this autoscaler started listening (its first tick or message).
        self.listening_since: float | None = None
        #: When each function was first decided on: a function created while the autoscaler
        #: runs counts as idle only from then, so the pods its Deployment was created with
        #: (``initialScale``) stay for an idle timeout instead of going at the first tick.
        self.known_since: dict[stats.FunctionKey, float] = {}

    def set_spec(self, function: stats.FunctionKey, spec: scaling.ScaleSpec) -> None:
        """Start (or keep) scaling a function with this spec."""
        self.specs[function] = spec
        self._retention = max(s.stable_window for s in self.specs.values())
        self.window.retention = self._retention

    def remove(self, function: stats.FunctionKey) -> None:
        """Stop scaling a function (it was deleted); its series go with it."""
        self.specs.pop(function, None)
        self.decisions.pop(function, None)
        self.known_since.pop(function, None)
        metrics.forget(function)

    def observe_ready(self, function: stats.FunctionKey, replicas: int) -> None:
        """The pods ready for a function, as its status says (exported, not decided on)."""
        if function in self.specs:
            metrics.ready(function, replicas)

    async def receive(self, message: stats.StatMessage, now: float) -> None:
        """Record a message; a poke is acted upon at once rather than at the next tick."""
        if self.listening_since is None:
            self.listening_since = now
        self.window.record(message, now)
        if message.poke:
            for stat in message.functions:
                if stat.function in self.specs:
                    await self.scale(stat.function, now)

    async def tick(self, now: float) -> None:
        """One decision round over every function with a spec."""
        if self.listening_since is None:
            self.listening_since = now
        self.window.expire(now)
        for function in list(self.specs):
            try:
                await self.scale(function, now)
            except LookupError as exc:
                # No workload yet (still building) or gone (being deleted): not an error.
                logger.debug("not scaling %s: %s", function, exc)
            except Exception:
                logger.exception("scaling %s failed", function)

    async def scale(self, function: stats.FunctionKey, now: float) -> scaling.Decision:
        """Decide for one function and apply the decision if it changes anything."""
        spec = self.specs[function]
        current = await self.scaler.get_scale(function)
        since = self.known_since.setdefault(function, now)
        if self.listening_since is not None:
            since = max(since, self.listening_since)
        decision = scaling.decide(
            self.window,
            function,
            spec,
            current,
            now,
            previous=self.decisions.get(function),
            listening_since=since,
        )
        if function not in self.specs:
            self.known_since.pop(function, None)
            return decision  # removed while its scale was read: nothing to act on or export
        self.decisions[function] = decision
        metrics.decided(function, decision.desired, decision.in_panic)
        if decision.desired != current:
            logger.info(
                "scaling %s from %d to %d (%s, stable %.2f, panic %.2f)",
                function,
                current,
                decision.desired,
                decision.reason,
                decision.stable_demand,
                decision.panic_demand,
            )
            await self.scaler.set_scale(function, decision.desired)
        return decision

    async def run(self, interval: float = 1.0) -> None:
        """Tick every ``interval`` seconds until cancelled."""
        while True:
            await self.tick(self.clock())
            await asyncio.sleep(interval)
