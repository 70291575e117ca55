"""Progressive rollouts of an alias: pure decisions, with time passed in.

When an alias with a ``rollout`` moves from a stable version S to a candidate V, traffic
goes to V in the policy's steps (say 10 %, then 50 %, then 100 %). Nothing here reads a
clock or does I/O: the autoscaler, which receives every activator's per-second report,
keeps a :class:`WindowedFigures`, calls :func:`decide` with the two versions' figures and
the time, and writes what comes back (routes, Events, a condition) to the Function's status.
The activator picks a version per request with :func:`choose`.

The rules (``docs/design/versions.md``, "Progressive rollout and automatic rollback"):

* V is judged only once it has ``min_invocations`` in the window: with fewer, the rollout
  holds (a step is not judged on too little).
* V is rolled back, at once and whatever the time left in the step, when its error rate is
  above S's by more than ``max_error_rate_increase`` percentage points, or its p99 duration
  above S's by more than ``max_duration_increase`` percent. All traffic goes back to S.
* Otherwise, once V has been healthy for ``interval`` at a step, it takes the next step, or
  all traffic after the last (promoted).
* A finished rollout (promoted or rolled back) never changes again: a new rollout starts
  from a new spec.

S's figures are a baseline only when S has ``min_invocations`` too. With fewer, its error
rate counts as 0 % (V is then held to the margin alone, so a bad V is not excused by a
handful of S's failures) and its p99 is not compared (there is nothing to compare with).

This module is a leaf of the standard library, like :mod:`kfn.stats`: the autoscaler and
the activator both import it, and neither needs the other.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Final, Generic, NamedTuple, TypeVar

V = TypeVar("V")
K = TypeVar("K", bound=Hashable)

#: Rates and ratios this close to the margin count as at the margin (not above it), so
#: floating-point rounding never decides a rollback.
_TOLERANCE: Final = 1e-9


class Outcome(enum.StrEnum):
    """Where a rollout stands; the value is what the Function's status shows."""

    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"


class Action(enum.StrEnum):
    """What one decision did."""

    HOLD = "Hold"
    """Nothing changes yet: too few invocations, or the step's interval is not over."""
    STEP = "Step"
    """The candidate takes the next step's share."""
    PROMOTE = "Promote"
    """All traffic to the candidate: the rollout is over."""
    ROLL_BACK = "RollBack"
    """All traffic back to the stable version: the rollout is over."""
    NO_CHANGE = "NoChange"
    """The rollout was already over."""


@dataclasses.dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """How an alias moves to a new version: the alias's ``rollout`` block, in seconds.

    Messages name the fields as the user writes them in the Function (``maxErrorRateIncrease``),
    since that is where a user fixes them.
    """

    steps: tuple[int, ...] = (10, 50)
    """Percent of requests to the candidate at each step; 100 is implied after the last."""
    interval: float = 300.0
    """Seconds the candidate stays healthy at a step before the next one."""
    window: float | None = None
    """Seconds of figures a decision looks at; ``None`` means :attr:`interval`."""
    max_error_rate_increase: float = 5.0
    """Percentage points the candidate's error rate may be above the stable version's."""
    max_duration_increase: float = 50.0
    """Percent the candidate's p99 duration may be above the stable version's."""
    min_invocations: int = 20
    """Invocations of a version in the window before its figures are judged."""

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(
                "rollout.steps must name at least one percent below 100, such as [10, 50]"
                " (100 is the implied last step); to switch at once, leave out rollout"
            )
        for step in self.steps:
            if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 99:
                raise ValueError(
                    f"rollout.steps must be whole percents from 1 to 99, got {step!r}"
                    " (100 is the implied last step)"
                )
        for before, after in zip(self.steps, self.steps[1:], strict=False):
            if after <= before:
                raise ValueError(
                    f"rollout.steps must grow from one step to the next, got {after} after"
                    f" {before} in {list(self.steps)}"
                )
        if not math.isfinite(self.interval) or self.interval <= 0:
            raise ValueError(
                f"rollout.interval must be a positive time, such as 5m, got {self.interval!r} s"
            )
        if self.window is not None and (not math.isfinite(self.window) or self.window <= 0):
            raise ValueError(
                f"rollout.window must be a positive time, such as 5m, got {self.window!r} s"
            )
        if not 0 <= self.max_error_rate_increase <= 100:
            raise ValueError(
                "rollout.maxErrorRateIncrease is in percentage points from 0 to 100,"
                f" got {self.max_error_rate_increase!r}"
            )
        if not math.isfinite(self.max_duration_increase) or self.max_duration_increase < 0:
            raise ValueError(
                "rollout.maxDurationIncrease is a percent of 0 or more,"
                f" got {self.max_duration_increase!r}"
            )
        if isinstance(self.min_invocations, bool) or self.min_invocations < 1:
            raise ValueError(
                "rollout.minInvocations must be at least 1 (a step is never judged on nothing),"
                f" got {self.min_invocations!r}"
            )

    @property
    def judging_window(self) -> float:
        """Seconds of figures a decision looks at: :attr:`window`, or :attr:`interval`."""
        return self.interval if self.window is None else self.window


@dataclasses.dataclass(frozen=True, slots=True)
class VersionFigures:
    """One version's invocations through an alias over the judging window."""

    invocations: int
    errors: int
    p99_duration_seconds: float | None
    """``None`` when the window holds no duration."""

    def __post_init__(self) -> None:
        if not 0 <= self.errors <= self.invocations:
            raise ValueError(
                f"need 0 <= errors <= invocations, got {self.errors} of {self.invocations}"
            )
        p99 = self.p99_duration_seconds
        if p99 is not None and (not math.isfinite(p99) or p99 < 0):
            raise ValueError(f"a p99 duration is a finite number of seconds, got {p99!r}")

    @property
    def error_percent(self) -> float:
        """Errors as a percent of invocations (0 when there were none)."""
        return 100.0 * self.errors / self.invocations if self.invocations else 0.0


class Route(NamedTuple):
    """A share of an alias's requests: ``percent`` of them go to ``version``."""

    version: int
    percent: int


@dataclasses.dataclass(frozen=True, slots=True)
class RolloutState:
    """Where one alias's rollout stands; the caller keeps it (in the Function's status)."""

    stable: int
    """The version traffic comes from (S), and goes back to on a rollback."""
    candidate: int
    """The version traffic moves to (V)."""
    step: int
    """Index into the policy's steps; ``len(steps)`` once promoted."""
    step_started_at: float
    """When the current step began; for a finished rollout, when it finished."""
    outcome: Outcome
    reason: str
    """CamelCase, for a condition's reason: ``Started``, ``Stepped``, ``Promoted``,
    ``ErrorRateIncreased``, ``DurationIncreased`` or ``ErrorRateAndDurationIncreased``."""
    message: str

    @property
    def finished(self) -> bool:
        return self.outcome is not Outcome.PROGRESSING


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What one call of :func:`decide` wants: the state to keep and the routes to serve."""

    state: RolloutState
    routes: tuple[Route, ...]
    """Versions with a share of requests (none at 0 %), stable first; the percents sum to 100."""
    action: Action
    message: str
    """What happened and why, for a log line or an Event."""


def start(policy: RolloutPolicy, stable: int, candidate: int, now: float) -> RolloutState:
    """Begin moving an alias from ``stable`` to ``candidate``: the first step's share to it."""
    if stable == candidate:
        raise ValueError(
            f"a rollout moves an alias to another version, but both are version {stable}"
        )
    share = policy.steps[0]
    message = (
        f"routing {share} % to version {candidate} and {100 - share} % to version {stable};"
        f" {_next_share(policy, 0)} % after {_span(policy.interval)}"
        f" if version {candidate} stays healthy"
    )
    return RolloutState(
        stable=stable,
        candidate=candidate,
        step=0,
        step_started_at=now,
        outcome=Outcome.PROGRESSING,
        reason="Started",
        message=message,
    )


def routes(policy: RolloutPolicy, state: RolloutState) -> tuple[Route, ...]:
    """The shares of requests a state stands for, stable first, none at 0 %."""
    if state.outcome is Outcome.PROMOTED:
        return (Route(state.candidate, 100),)
    if state.outcome is Outcome.ROLLED_BACK:
        return (Route(state.stable, 100),)
    share = policy.steps[_step(policy, state)]
    return (Route(state.stable, 100 - share), Route(state.candidate, share))


def decide(
    policy: RolloutPolicy,
    state: RolloutState,
    stable_figures: VersionFigures,
    candidate_figures: VersionFigures,
    now: float,
) -> Decision:
    """Judge the candidate on both versions' figures over the policy's window, at ``now``.

    A hold returns ``state`` itself, so a caller that writes the status only on a change
    writes nothing while a step runs. A policy edited to fewer steps mid-rollout goes on
    from its last step.
    """
    if state.finished:
        return Decision(state, routes(policy, state), Action.NO_CHANGE, state.message)

    stable, candidate = state.stable, state.candidate
    step = _step(policy, state)
    share = policy.steps[step]
    window = _span(policy.judging_window)
    if candidate_figures.invocations < policy.min_invocations:
        message = (
            f"holding {share} % on version {candidate}: {candidate_figures.invocations:,}"
            f" invocations in the last {window}, and a step is judged on at least"
            f" {policy.min_invocations:,}"
        )
        return Decision(state, routes(policy, state), Action.HOLD, message)

    baseline = stable_figures.invocations >= policy.min_invocations
    worse: list[str] = []
    reasons: list[str] = []
    error_clause = _error_rate_worse(policy, state, stable_figures, candidate_figures, baseline)
    if error_clause:
        worse.append(error_clause)
        reasons.append("ErrorRate")
    duration_clause = _duration_worse(policy, state, stable_figures, candidate_figures, baseline)
    if duration_clause:
        worse.append(duration_clause)
        reasons.append("Duration")
    if worse:
        message = f"{'; '.join(worse)}: rolled back to version {stable}"
        rolled_back = dataclasses.replace(
            state,
            step_started_at=now,
            outcome=Outcome.ROLLED_BACK,
            reason="And".join(reasons) + "Increased",
            message=message,
        )
        return Decision(rolled_back, routes(policy, rolled_back), Action.ROLL_BACK, message)

    health = _health(state, stable_figures, candidate_figures)
    elapsed = now - state.step_started_at
    if elapsed < policy.interval:
        message = (
            f"version {candidate} is healthy at {share} % ({health});"
            f" {_next_share(policy, step)} % in {_span(policy.interval - elapsed)}"
        )
        return Decision(state, routes(policy, state), Action.HOLD, message)

    healthy_for = f"version {candidate} was healthy for {_span(policy.interval)} at {share} %"
    if step + 1 < len(policy.steps):
        next_share = policy.steps[step + 1]
        message = f"{healthy_for} ({health}): now {next_share} %"
        stepped = dataclasses.replace(
            state, step=step + 1, step_started_at=now, reason="Stepped", message=message
        )
        return Decision(stepped, routes(policy, stepped), Action.STEP, message)
    message = f"{healthy_for} ({health}): promoted, 100 % to version {candidate}"
    promoted = dataclasses.replace(
        state,
        step=len(policy.steps),
        step_started_at=now,
        outcome=Outcome.PROMOTED,
        reason="Promoted",
        message=message,
    )
    return Decision(promoted, routes(policy, promoted), Action.PROMOTE, message)


def _step(policy: RolloutPolicy, state: RolloutState) -> int:
    return max(0, min(state.step, len(policy.steps) - 1))


def _next_share(policy: RolloutPolicy, step: int) -> int:
    return policy.steps[step + 1] if step + 1 < len(policy.steps) else 100


def _error_rate_worse(
    policy: RolloutPolicy,
    state: RolloutState,
    stable: VersionFigures,
    candidate: VersionFigures,
    baseline: bool,
) -> str:
    """The clause saying how V's error rate is too high, or "" when it is within the margin."""
    stable_percent = stable.error_percent if baseline else 0.0
    increase = candidate.error_percent - stable_percent
    if increase <= policy.max_error_rate_increase + _TOLERANCE:
        return ""
    if baseline:
        against = f"{stable_percent:.1f} % of {stable.invocations:,} for version {state.stable}"
    else:
        against = (
            f"0.0 % for version {state.stable} (its {stable.invocations:,} invocations are too"
            f" few to compare with, so it counts as 0.0 %)"
        )
    return (
        f"version {state.candidate} failed {candidate.error_percent:.1f} % of"
        f" {candidate.invocations:,} invocations against {against}, above the allowed"
        f" {policy.max_error_rate_increase:g} points"
    )


def _duration_worse(
    policy: RolloutPolicy,
    state: RolloutState,
    stable: VersionFigures,
    candidate: VersionFigures,
    baseline: bool,
) -> str:
    """The clause saying how V's p99 duration is too long, or "" when it is within the margin
    (or either p99 is unknown)."""
    stable_p99, candidate_p99 = stable.p99_duration_seconds, candidate.p99_duration_seconds
    if not baseline or stable_p99 is None or candidate_p99 is None:
        return ""
    allowed = stable_p99 * (1 + policy.max_duration_increase / 100)
    if candidate_p99 <= allowed * (1 + _TOLERANCE):
        return ""
    increase = f" (+{100 * (candidate_p99 / stable_p99 - 1):.0f} %)" if stable_p99 > 0 else ""
    return (
        f"version {state.candidate}'s p99 duration was {_duration(candidate_p99)} against"
        f" {_duration(stable_p99)} for version {state.stable}{increase}, above the allowed"
        f" {policy.max_duration_increase:g} %"
    )


def _health(state: RolloutState, stable: VersionFigures, candidate: VersionFigures) -> str:
    return f"{_summary(state.candidate, candidate)}; {_summary(state.stable, stable)}"


def _summary(version: int, figures: VersionFigures) -> str:
    p99 = figures.p99_duration_seconds
    duration = "" if p99 is None else f", p99 {_duration(p99)}"
    return (
        f"version {version} failed {figures.error_percent:.1f} % of"
        f" {figures.invocations:,}{duration}"
    )


def _duration(seconds: float) -> str:
    """A duration as a person reads it: ``840 ms``, ``1.25 s``."""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.3g} s"


def _span(seconds: float) -> str:
    """A length of time as the Function spells it: ``5m``, ``1m30s``, ``45s``, ``2h``."""
    whole = math.ceil(seconds - _TOLERANCE)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


# Per-request choice ---------------------------------------------------------------------------


def choose(routes: Sequence[tuple[V, int]], draw: float) -> V:
    """The version one request goes to: ``draw`` (uniform in [0, 1), ``random.random()`` in
    the activator; a parameter so tests choose it) against the cumulative percents.

    Route *i* takes the draws in ``[sum(p[:i]) / 100, sum(p[:i + 1]) / 100)``, so a 0 % route
    is never chosen and a 100 % route always is.
    """
    if not 0.0 <= draw < 1.0:
        raise ValueError(f"a draw is in [0, 1), got {draw!r}")
    if sum(percent for _, percent in routes) != 100 or any(p < 0 for _, p in routes):
        raise ValueError(f"routes are percents of 0 or more that sum to 100, got {list(routes)}")
    cumulative = 0
    for version, percent in routes:
        cumulative += percent
        if percent and draw < cumulative / 100:
            return version
    # Unreachable: the last route with a share ends at 100 / 100 = 1.0, above any draw.
    raise AssertionError("no route with a share")  # pragma: no cover


# Figures over a sliding window ------------------------------------------------------------------

#: Durations are counted in log-spaced bins: bin ``i`` holds ``[LOWEST * R**i, LOWEST * R**(i+1))``
#: with ``R = 2 ** (1 / BINS_PER_DOUBLING)``, and a percentile is reported as the geometric
#: middle of its bin, ``LOWEST * R**(i + 0.5)``. So a p99 is within :data:`DURATION_PRECISION`
#: (about 2.2 %) of the samples' true (nearest-rank) p99, for durations from 0.1 ms to
#: :data:`HIGHEST` (about 1 h 52 min). Shorter durations count in the first bin, longer ones
#: in the last.
LOWEST: Final = 1e-4
BINS_PER_DOUBLING: Final = 16
DOUBLINGS: Final = 26
BINS: Final = BINS_PER_DOUBLING * DOUBLINGS
HIGHEST: Final = LOWEST * 2.0**DOUBLINGS
#: The largest relative error of a reported percentile within ``[LOWEST, HIGHEST)``.
DURATION_PRECISION: Final = 2.0 ** (1 / (2 * BINS_PER_DOUBLING)) - 1


def duration_bin(seconds: float) -> int:
    """The bin a duration counts in (0 to ``BINS - 1``); what an activator would report."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration is a finite number of seconds, got {seconds!r}")
    if seconds < LOWEST:
        return 0
    return min(BINS - 1, math.floor(math.log2(seconds / LOWEST) * BINS_PER_DOUBLING))


def bin_duration(index: int) -> float:
    """The duration a bin stands for: the geometric middle of its bounds."""
    return float(LOWEST * 2.0 ** ((index + 0.5) / BINS_PER_DOUBLING))


@dataclasses.dataclass(slots=True)
class _Second:
    """One second of one version's invocations."""

    invocations: int = 0
    errors: int = 0
    durations: dict[int, int] = dataclasses.field(default_factory=dict)
    """Bin index -> count; only the bins hit."""


class WindowedFigures(Generic[K]):
    """Per-second buckets of invocations, errors and durations, per version.

    The key is whatever the caller tells versions apart by (a version number, or a
    function, alias and version). Records are placed by the time the caller received them
    (``now``); one at an earlier second than the newest already kept counts in the newest,
    so buckets stay in time order.

    Memory is bounded: a version keeps at most ``ceil(retention)`` seconds (older ones
    are dropped as records arrive and on :meth:`expire`), each with two counters and at most
    ``BINS`` (416) duration bins, and only the bins hit (a function whose durations spread
    over a factor of two fills 16 of them). A version with nothing left in the window is
    forgotten on :meth:`expire`.
    """

    def __init__(self, *, retention: float) -> None:
        """``retention`` is the longest window :meth:`figures` will be asked for, in seconds."""
        if not math.isfinite(retention) or retention <= 0:
            raise ValueError(f"retention is a positive number of seconds, got {retention!r}")
        self.retention = retention
        # key -> second -> bucket, in time order (a dict keeps insertion order).
        self._seconds: dict[K, dict[int, _Second]] = {}

    def record(
        self,
        now: float,
        version: K,
        invocations: int,
        errors: int,
        durations: Iterable[float] = (),
        *,
        binned_durations: Mapping[int, int] | None = None,
    ) -> None:
        """Add what one report says of one version, received at ``now``.

        ``durations`` are seconds, one per invocation that has one; ``binned_durations``
        (bin -> count, see :func:`duration_bin`) is the same, already counted by the sender.
        """
        if invocations < 0 or not 0 <= errors <= invocations:
            raise ValueError(f"need 0 <= errors <= invocations, got {errors} of {invocations}")
        bins = [duration_bin(d) for d in durations]
        for index, count in (binned_durations or {}).items():
            if not 0 <= index < BINS or count < 0:
                raise ValueError(f"a duration bin is 0 to {BINS - 1} with a count of 0 or more")
        by_second = self._seconds.setdefault(version, {})
        second = math.floor(now)
        if by_second:
            second = max(second, next(reversed(by_second)))
        bucket = by_second.setdefault(second, _Second())
        bucket.invocations += invocations
        bucket.errors += errors
        for index in bins:
            bucket.durations[index] = bucket.durations.get(index, 0) + 1
        for index, count in (binned_durations or {}).items():
            if count:
                bucket.durations[index] = bucket.durations.get(index, 0) + count
        self._drop_old(by_second, now)

    def expire(self, now: float) -> None:
        """Drop seconds older than the retention, and versions left with none."""
        for version in list(self._seconds):
            by_second = self._seconds[version]
            self._drop_old(by_second, now)
            if not by_second:
                del self._seconds[version]

    def versions(self) -> list[K]:
        """The versions with any second kept."""
        return list(self._seconds)

    def seconds_kept(self) -> int:
        """How many per-second buckets are kept across versions: the memory in use."""
        return sum(len(by_second) for by_second in self._seconds.values())

    def figures(self, version: K, now: float, window: float) -> VersionFigures:
        """A version's invocations, errors and p99 duration over the last ``window`` seconds
        (the seconds ``floor(now - window) + 1`` to ``floor(now)``)."""
        if not 0 < window <= self.retention:
            raise ValueError(
                f"a window is from 0 to the retention ({self.retention:g} s), got {window!r}"
            )
        by_second = self._seconds.get(version, {})
        invocations = errors = 0
        counts: collections.Counter[int] = collections.Counter()
        for second in range(math.floor(now - window) + 1, math.floor(now) + 1):
            bucket = by_second.get(second)
            if bucket is not None:
                invocations += bucket.invocations
                errors += bucket.errors
                counts.update(bucket.durations)
        return VersionFigures(invocations, errors, _percentile(counts, 0.99))

    def _drop_old(self, by_second: dict[int, _Second], now: float) -> None:
        """Drop the seconds no window up to the retention reaches, oldest first."""
        if not by_second:
            return
        latest = max(math.floor(now), next(reversed(by_second)))
        oldest = math.floor(latest - self.retention) + 1
        while by_second and next(iter(by_second)) < oldest:
            del by_second[next(iter(by_second))]


def _percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The nearest-rank percentile of binned durations, as its bin's middle; ``None`` if empty."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(1, math.ceil(fraction * total - _TOLERANCE))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return bin_duration(index)
    raise AssertionError("the counts add up to their total")  # pragma: no cover
