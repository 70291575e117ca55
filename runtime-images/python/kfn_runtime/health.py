"""Readiness and liveness, decided from the runtime's state with the time passed in.

A sync Python handler that runs past its deadline cannot be stopped: the caller gets its 504 but
the worker thread and the concurrency slot stay taken until the handler returns. When every slot
is held that way the pod can do no work, so it stops being ready (the activator routes elsewhere)
and, once that has lasted ``stuck_grace_ms``, stops being live (the kubelet restarts it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def stuck_since(deadlines_ms: Iterable[int], concurrency: int, now_ms: int) -> int | None:
    """When the pod became unable to serve: all slots held past their deadlines, else None."""
    overdue = [d for d in deadlines_ms if d <= now_ms]
    if len(overdue) < concurrency:
        return None
    return max(sorted(overdue)[:concurrency])


def readiness(
    *,
    initialized: bool,
    init_failed: bool,
    draining: bool,
    deadlines_ms: Iterable[int],
    concurrency: int,
    now_ms: int,
    pool_state: str | None = None,
) -> Verdict:
    """``pool_state``: a pool pod's state until it is a function (``idle``, ``specialising``,
    ``spent``), never ready."""
    if draining:
        return Verdict(False, "draining")
    if pool_state is not None:
        return Verdict(False, pool_state)
    if init_failed:
        return Verdict(False, "init error")
    if not initialized:
        return Verdict(False, "initializing")
    if stuck_since(deadlines_ms, concurrency, now_ms) is not None:
        return Verdict(False, "every slot is held by a handler past its deadline")
    return Verdict(True, "ready")


def liveness(
    *, deadlines_ms: Iterable[int], concurrency: int, now_ms: int, stuck_grace_ms: int
) -> Verdict:
    since = stuck_since(deadlines_ms, concurrency, now_ms)
    if since is not None and now_ms - since >= stuck_grace_ms:
        return Verdict(False, "every slot has been held past its deadline too long")
    return Verdict(True, "live")
