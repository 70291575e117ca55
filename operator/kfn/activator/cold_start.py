"""A cold start's phases: the instants each source saw, and the phases decided from them.

A cold start runs from the first request queued while its function had no ready pod to the
first byte of that request's answer. Each instant comes from the most precise source that
sees it, all wall-clock seconds (``time.time()``) on this one node, so that the activator's
instants and the runtime's own report are comparable:

=============  ===========================================================  ==============
instant        source                                                       precision
=============  ===========================================================  ==============
``queued``     the activator: the first request queued at zero              µs
``created``    the activator's pod watch: the new pod seen ADDED            ms (watch lag)
``bound``      the same watch: the pod seen with ``spec.nodeName``          ms (watch lag)
``start``      the runtime (``Kfn-Init-Timing``): its process's start       10 ms (/proc)
``boot``       the runtime: loaded, about to import the handler             µs
``imported``   the runtime: the handler's module loaded (init code done)    µs
``probed``     the activator: its first successful probe of the pod (it    µs (20 ms
               probes once the pod's IP is in its status, then every 20 ms) probe interval)
``first_byte`` the activator: the head of the first request's answer        µs
=============  ===========================================================  ==============

:func:`phases` decides (pure): each phase is the span between two neighbouring instants
(``scale`` = created - queued, ``schedule``, ``container_start``, ``runtime_init``,
``handler_import``, ``ready``, ``first_byte``). An instant no source reported, or one
earlier than the instant kept before it or later than the first byte (clock skew, the 10 ms
resolution of the process's start), is left out: the phases on both sides of it are 0 and
the span they cover goes to ``other``. ``other`` is therefore the only remainder, never
negative, and the phases and ``other`` always sum to the total.

:class:`ColdStart` tracks one cold start from the throttler's queue to the answer of the
request that paid for it (the first one dispatched), which gets the ``Server-Timing``
header (:func:`server_timing`); every other request that waited for it gets its own wait.
:class:`PodInstants` keeps each pod's instants by address, written by discovery.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

#: The phases, in order; ``other`` is the remainder.
PHASES = (
    "scale",
    "schedule",
    "container_start",
    "runtime_init",
    "handler_import",
    "ready",
    "first_byte",
)
OTHER = "other"


@dataclasses.dataclass(frozen=True, slots=True)
class Instants:
    """The instants of one cold start (wall-clock seconds; None: no source reported it)."""

    queued: float
    first_byte: float
    created: float | None = None
    bound: float | None = None
    start: float | None = None
    boot: float | None = None
    imported: float | None = None
    probed: float | None = None

    def ordered(self) -> tuple[float | None, ...]:
        return (
            self.queued,
            self.created,
            self.bound,
            self.start,
            self.boot,
            self.imported,
            self.probed,
            self.first_byte,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Phases:
    """Phase durations in seconds (each of :data:`PHASES`, then ``other``) and the total."""

    durations: Mapping[str, float]
    total: float


def phases(instants: Instants) -> Phases:
    """The phases between the instants (see the module doc for the rules)."""
    end = max(instants.first_byte, instants.queued)
    durations = dict.fromkeys(PHASES, 0.0)
    other = 0.0
    last = instants.queued
    #: Whether the instant before the current one was kept (else the span is other's).
    intact = True
    for name, given in zip(PHASES, instants.ordered()[1:], strict=True):
        point = end if name == "first_byte" else given
        if point is None or not last <= point <= end:
            intact = False
            continue
        if intact:
            durations[name] = point - last
        else:
            other += point - last
        last = point
        intact = True
    durations[OTHER] = other
    return Phases(durations, end - instants.queued)


def server_timing(decided: Phases) -> bytes:
    """``Server-Timing`` for the request that paid for a cold start (milliseconds)."""
    parts = [f"{name};dur={decided.durations[name] * 1000:.2f}" for name in (*PHASES, OTHER)]
    parts.append(f"cold-start;dur={decided.total * 1000:.2f}")
    return ("Server-Timing: " + ", ".join(parts) + "\r\n").encode()


def waited(seconds: float) -> bytes:
    """``Server-Timing`` for a request that waited for a cold start another request paid for."""
    return b"Server-Timing: cold-start;dur=%.2f\r\n" % (max(0.0, seconds) * 1000)


def parse_init_timing(value: bytes) -> tuple[float | None, float, float] | None:
    """``start=<s>;boot=<s>;imported=<s>`` (the runtime's ``Kfn-Init-Timing``), or None.

    A runtime that cannot tell its process's start leaves ``start`` out: the other two
    still count (the span before ``boot`` then goes to ``other``)."""
    found: dict[str, float] = {}
    for part in value.split(b";"):
        key, _, number = part.strip().partition(b"=")
        try:
            found[key.decode("ascii")] = float(number)
        except ValueError:
            return None
    try:
        return found.get("start"), found["boot"], found["imported"]
    except KeyError:
        return None


@dataclasses.dataclass(slots=True)
class Pod:
    """The instants of one pod (see the module doc)."""

    created: float | None = None
    bound: float | None = None
    probed: float | None = None
    #: The runtime's report: process start, runtime loaded, handler imported.
    init: tuple[float | None, float, float] | None = None


class PodInstants:
    """Every watched pod's instants, by address (``ip:port``); written by discovery."""

    def __init__(self) -> None:
        self.pods: dict[str, Pod] = {}

    def of(self, address: str) -> Pod:
        found = self.pods.get(address)
        if found is None:
            found = self.pods[address] = Pod()
        return found

    def forget(self, address: str) -> None:
        self.pods.pop(address, None)


#: Called with a cold start's decided phases once its paying request is answered (None when
#: a request that waited for it gave up first), and whether the start is to be counted now:
#: each start is counted once, at whichever of the two comes first.
Report = Callable[[Phases | None, bool], None]


class ColdStart:
    """One cold start, from its first queued request to the answer of the one paying for it."""

    __slots__ = ("counted", "paid", "pods", "queued", "queued_at", "ready_at", "report")

    def __init__(self, queued_at: float, pods: PodInstants | None, report: Report | None) -> None:
        #: When the first request queued, on the loop's clock, and on the wall clock.
        self.queued_at = queued_at
        self.queued = time.time()
        #: When the first endpoint became ready (loop clock), None while none is.
        self.ready_at: float | None = None
        self.paid = False
        #: Whether it was counted already (see :meth:`gave_up`).
        self.counted = False
        self.pods = pods
        self.report = report

    def waited_for(self, accepted: float) -> bool:
        """Whether a request accepted at ``accepted`` (loop clock) waited for this start."""
        return self.ready_at is None or accepted <= self.ready_at

    def claim(self) -> bool:
        """True for the first request to claim it: that one pays for it."""
        if self.paid:
            return False
        self.paid = True
        return True

    def gave_up(self) -> None:
        """A request that waited for it gave up (its queue timeout) before any pod was ready.

        The start counts now: every request waiting for it may give up, and then no answer
        would ever count it. Its phases, unknown yet, are reported if a later request that
        waited for it is answered.
        """
        if self.counted or self.paid or self.ready_at is not None:
            return
        self.counted = True
        if self.report is not None:
            self.report(None, True)

    def answered(self, address: str, first_byte: float) -> bytes:
        """The paying request's answer began (wall clock) from the pod at ``address``: the
        phases decided and reported, and its ``Server-Timing`` header."""
        pod = self.pods.pods.get(address) if self.pods is not None else None
        init: Sequence[float | None] = (None, None, None)
        if pod is not None and pod.init is not None:
            init = pod.init
        decided = phases(
            Instants(
                queued=self.queued,
                first_byte=first_byte,
                created=pod.created if pod else None,
                bound=pod.bound if pod else None,
                start=init[0],
                boot=init[1],
                imported=init[2],
                probed=pod.probed if pod else None,
            )
        )
        if self.report is not None:
            self.report(decided, not self.counted)
        self.counted = True
        return server_timing(decided)
