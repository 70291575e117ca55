"""Deciding replicas from activator stats: pure, with time passed in.

Nothing here reads a clock or does I/O, so every scaling rule is tested by feeding
messages at chosen instants. :class:`kfn.autoscaler.autoscaler.Autoscaler` acts on
the decisions.

The rules follow Knative's KPA:

* Demand is the number of requests in flight at pods plus those queued in the
  activators, summed across activators per one-second bucket.
* The stable window (60 s) averages demand; ``desired = ceil(demand / target)``.
* The panic window (6 s) reacts to bursts: when its demand reaches twice what the
  current pods can take, the autoscaler panics. In panic it follows the panic
  window and never scales down, until a whole stable window has passed without
  the threshold being reached again.
* A request queued at zero replicas asks for one replica at once (the poke); so does a
  wake (a caller expecting requests soon), for ``stale_after`` seconds after it.
* Above zero the function keeps at least ``activation_scale`` replicas (Knative's
  activation-scale): scaling from zero goes straight there, and the scale-down that follows
  stops there until the function is idle.
* Scale-down is rate limited (at most halving per decision) and reaching zero
  needs ``idle_timeout`` seconds without any request, in-flight or queued one.
  Once a function has been idle that long it goes to ``min_replicas`` at once,
  whatever the stable window still remembers: scale-to-zero then takes
  ``idle_timeout``, not ``stable_window``. A wake counts as a request for this clock: a woken
  function keeps its pods for ``idle_timeout`` after the wake.
"""

from __future__ import annotations

import dataclasses
import math

from kfn import stats


@dataclasses.dataclass(frozen=True, slots=True)
class ScaleSpec:
    """How one function scales. Filled from the Function's spec by the caller."""

    target_concurrency: float = 1.0
    min_replicas: int = 0
    max_replicas: int = 100
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    idle_timeout: float = 60.0
    activation_scale: int = 1
    max_scale_down_rate: float = 2.0
    max_scale_up_rate: float = 1000.0

    def __post_init__(self) -> None:
        if self.target_concurrency <= 0:
            raise ValueError("target_concurrency must be positive")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError("need 0 <= min_replicas <= max_replicas and max_replicas >= 1")
        if not 1 <= self.activation_scale <= self.max_replicas:
            raise ValueError("need 1 <= activation_scale <= max_replicas")
        if not 0 < self.panic_window <= self.stable_window:
            raise ValueError("need 0 < panic_window <= stable_window")
        if self.max_scale_down_rate < 1 or self.max_scale_up_rate < 1:
            raise ValueError("scale rates must be at least 1")


@dataclasses.dataclass(slots=True)
class _Bucket:
    """One second of one activator's report for one function."""

    concurrency: float = 0.0
    peak: int = 0
    queued: int = 0
    requests: int = 0


@dataclasses.dataclass(slots=True)
class _Latest:
    """The most recent report of one activator, for values that are "now" (queued)."""

    received: float
    queued: int


class StatsWindow:
    """Per-second buckets of demand per function, summed across activators.

    Messages are placed by the time the autoscaler received them (``now``), not by
    the sender's clock, so activators with skewed clocks still line up. An
    activator that stops reporting fades out: its queued count stops counting after
    ``stale_after`` seconds, and its buckets leave the window as time passes.
    """

    def __init__(self, *, retention: float = 60.0, stale_after: float = 3.0) -> None:
        self.retention = retention
        self.stale_after = stale_after
        # function -> second -> activator -> bucket
        self._buckets: dict[stats.FunctionKey, dict[int, dict[str, _Bucket]]] = {}
        self._latest: dict[stats.FunctionKey, dict[str, _Latest]] = {}
        self._first_seen: dict[stats.FunctionKey, float] = {}
        self._last_active: dict[stats.FunctionKey, float] = {}
        self._last_woken: dict[stats.FunctionKey, float] = {}

    def record(self, message: stats.StatMessage, now: float) -> None:
        """Add one activator's message, received at ``now``."""
        second = math.floor(now)
        for stat in message.functions:
            key = stat.function
            self._first_seen.setdefault(key, now)
            by_second = self._buckets.setdefault(key, {})
            bucket = by_second.setdefault(second, {}).setdefault(message.activator, _Bucket())
            if message.poke:
                # A poke carries a snapshot, not a period: it must not dilute the average.
                bucket.concurrency = max(bucket.concurrency, float(stat.peak_concurrency))
            else:
                bucket.concurrency = max(bucket.concurrency, stat.average_concurrency)
            bucket.peak = max(bucket.peak, stat.peak_concurrency)
            bucket.queued = stat.queued
            bucket.requests += stat.requests
            self._latest.setdefault(key, {})[message.activator] = _Latest(now, stat.queued)
            if stat.wakes:
                self._last_woken[key] = now
            if (
                stat.requests
                or stat.queued
                or stat.peak_concurrency
                or stat.average_concurrency
                or stat.wakes
            ):
                self._last_active[key] = now

    def expire(self, now: float) -> None:
        """Forget buckets older than the retention, so memory stays bounded."""
        oldest = math.floor(now - self.retention)
        for key in list(self._buckets):
            by_second = self._buckets[key]
            for second in [s for s in by_second if s < oldest]:
                del by_second[second]
            latest = self._latest.get(key, {})
            for activator in [a for a, v in latest.items() if now - v.received > self.retention]:
                del latest[activator]
            if not by_second and not latest:
                del self._buckets[key]
                self._latest.pop(key, None)
                self._first_seen.pop(key, None)
        for key in [k for k, at in self._last_woken.items() if now - at > self.stale_after]:
            del self._last_woken[key]

    def functions(self) -> list[stats.FunctionKey]:
        """The functions with any data in the window."""
        return list(self._buckets)

    def average_demand(self, key: stats.FunctionKey, now: float, window: float) -> float:
        """Average over ``window`` seconds of (in-flight + queued), summed across activators.

        Seconds without a report count as zero demand, except before the function
        was first seen: a fresh autoscaler does not dilute a burst with the time
        it was not listening.
        """
        by_second = self._buckets.get(key)
        if not by_second:
            return 0.0
        end = math.floor(now)
        start = math.floor(now - window) + 1
        first = math.floor(self._first_seen.get(key, now))
        start = max(start, first)
        if end < start:
            return 0.0
        total = 0.0
        for second in range(start, end + 1):
            for bucket in by_second.get(second, {}).values():
                total += bucket.concurrency + bucket.queued
        return total / (end - start + 1)

    def queued_now(self, key: stats.FunctionKey, now: float) -> int:
        """Requests queued across activators, from reports no older than ``stale_after``."""
        return sum(
            latest.queued
            for latest in self._latest.get(key, {}).values()
            if now - latest.received <= self.stale_after
        )

    def woken(self, key: stats.FunctionKey, now: float) -> bool:
        """Whether a wake for the function came within ``stale_after`` seconds: it asks for
        pods as a queued request does, for as long as a report of one would count."""
        at = self._last_woken.get(key)
        return at is not None and 0.0 <= now - at <= self.stale_after

    def idle_for(self, key: stats.FunctionKey, now: float) -> float:
        """Seconds since the last report with any activity (infinite if never active)."""
        last = self._last_active.get(key)
        return math.inf if last is None else max(0.0, now - last)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What the autoscaler wants, and the panic state to carry into the next decision."""

    desired: int
    stable_demand: float
    panic_demand: float
    panic_since: float | None = None
    panic_desired: int = 0
    reason: str = ""

    @property
    def in_panic(self) -> bool:
        return self.panic_since is not None


def decide(
    window: StatsWindow,
    key: stats.FunctionKey,
    spec: ScaleSpec,
    current: int,
    now: float,
    *,
    previous: Decision | None = None,
    listening_since: float | None = None,
) -> Decision:
    """Decide the replicas of one function; ``previous`` carries panic mode over.

    ``current`` is the replica count the function has now (as the scale subresource
    says). ``listening_since`` is when the caller started receiving stats: a function
    counts as idle for at most that long, so an autoscaler that restarts gives every
    function a full idle timeout before it takes its pods away.
    """
    stable_demand = window.average_demand(key, now, spec.stable_window)
    panic_demand = window.average_demand(key, now, spec.panic_window)
    queued = window.queued_now(key, now)
    target = spec.target_concurrency

    desired_stable = math.ceil(stable_demand / target - 1e-9)
    desired_panic = math.ceil(panic_demand / target - 1e-9)
    ready = max(1, current)
    over_threshold = panic_demand / (ready * target) >= spec.panic_threshold

    panic_since = previous.panic_since if previous else None
    panic_desired = previous.panic_desired if previous else 0
    if over_threshold:
        panic_since = now
    elif panic_since is not None and now - panic_since >= spec.stable_window:
        panic_since = None
        panic_desired = 0

    if panic_since is not None:
        # In panic: follow the short window, never below what we have or had.
        desired = max(desired_panic, current, panic_desired)
        panic_desired = desired
        reason = "panic"
    else:
        desired = desired_stable
        reason = "stable"

    # Rate limits: never more than max_scale_up_rate * ready at once, never less
    # than ready / max_scale_down_rate.
    desired = min(desired, math.ceil(spec.max_scale_up_rate * ready))
    if current > 0:
        desired = max(desired, math.floor(current / spec.max_scale_down_rate))

    idle = window.idle_for(key, now)
    if listening_since is not None:
        idle = min(idle, max(0.0, now - listening_since))
    if queued > 0 and desired < 1:
        desired = 1
        reason = "poke" if current == 0 else "queued"
    elif desired < 1 and window.woken(key, now):
        desired = 1
        reason = "wake"
    if desired < 1 and current > 0 and idle < spec.idle_timeout:
        # Zero only after a full idle period: no request, none in flight, none queued.
        desired = 1
        reason = "idle-timeout-pending"
    if queued == 0 and math.isfinite(idle) and idle >= spec.idle_timeout:
        # Idle for the whole idle timeout: nothing is in flight or queued anywhere, so the
        # stable window's memory of past load and the scale-down rate no longer matter.
        # (A function never seen active keeps the rate-limited path: an autoscaler that
        # just started knows nothing yet and must not drop pods at once.)
        desired = 0
        reason = "idle"
    if 0 < desired < spec.activation_scale:
        # Knative's activation-scale: from zero straight to it, and never below it above zero.
        desired = spec.activation_scale
        reason += "+activation"

    clamped = max(spec.min_replicas, min(spec.max_replicas, desired))
    if clamped != desired:
        reason += "+clamped"
    return Decision(
        desired=clamped,
        stable_demand=stable_demand,
        panic_demand=panic_demand,
        panic_since=panic_since,
        panic_desired=min(panic_desired, spec.max_replicas),
        reason=reason,
    )
