"""Why a function's process died mid-request: its container's exit, from the pod's status.

When a pod's connection ends before its answer, the activator knows only that the process
died (``Runtime.ExitError``). The kubelet knows why: the container's ``state.terminated`` or
``lastState.terminated`` says ``OOMKilled`` or the exit code, a second or two later, in the
pod's status that the activator watches anyway (:mod:`~kfn.activator.discovery`). So the
exchange whose pod died waits a short, bounded while for that report (:data:`WAIT`) and
answers as Lambda does: ``Runtime.OutOfMemory`` for a process killed for its memory,
``Runtime.ExitError`` with "exit status N" or "signal: …" otherwise, and the plain
``Runtime.ExitError`` when no report came in time (a cut connection, a deleted pod).

:func:`of_pod` reads the facts (pure); :class:`Exits` keeps them per pod address and wakes
who waits for the next exit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import signal
from collections.abc import Mapping
from typing import Any

#: How long an answer waits for the kubelet's report of the exit. The kubelet notices a
#: container's end on its next relist (every second) and then writes the pod's status.
WAIT = 3.0
#: The container a function pod runs its runtime in (kfn.resources.deployment).
CONTAINER = "function"


@dataclasses.dataclass(frozen=True, slots=True)
class Exit:
    """One end of a function container, as the kubelet reported it."""

    reason: str
    exit_code: int
    #: When it ended (seconds since the epoch), or 0 when not reported.
    finished: float = 0.0

    @property
    def out_of_memory(self) -> bool:
        return self.reason == "OOMKilled"

    def describe(self) -> str:
        """Lambda's words for the end: ``signal: killed``, ``exit status 1``."""
        if self.exit_code > 128:
            try:
                name = signal.Signals(self.exit_code - 128).name
            except ValueError:
                name = f"signal {self.exit_code - 128}"
            return f"signal: {_SIGNAL_WORDS.get(name, name.lower())}"
        return f"exit status {self.exit_code}"


#: Go's words for signals, which Lambda's messages use ("signal: killed").
_SIGNAL_WORDS = {
    "SIGKILL": "killed",
    "SIGSEGV": "segmentation fault",
    "SIGABRT": "aborted",
    "SIGTERM": "terminated",
    "SIGBUS": "bus error",
    "SIGILL": "illegal instruction",
    "SIGFPE": "floating point exception",
}


def of_pod(status: Mapping[str, Any]) -> tuple[int, Exit | None]:
    """How many times the pod's function container has ended, and its latest end.

    A container that ended and was restarted counts in ``restartCount`` with its end in
    ``lastState``; one that ended and waits to restart counts once more, in ``state``.
    """
    containers = status.get("containerStatuses") or []
    chosen = next((c for c in containers if c.get("name") == CONTAINER), None)
    if chosen is None:
        chosen = containers[0] if containers else {}
    count = int(chosen.get("restartCount") or 0)
    current = (chosen.get("state") or {}).get("terminated")
    if current:
        count += 1
    ended = current or (chosen.get("lastState") or {}).get("terminated")
    if not ended:
        return count, None
    return count, Exit(
        reason=str(ended.get("reason") or ""),
        exit_code=int(ended.get("exitCode") or 0),
        finished=_epoch(ended.get("finishedAt")),
    )


def _epoch(stamp: Any) -> float:
    if not isinstance(stamp, str) or not stamp:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


#: How many times a container ended, and its latest end.
_Ends = tuple[int, Exit | None]


class Exits:
    """The latest container exit of every function pod, by address, on one event loop."""

    def __init__(self) -> None:
        self._seen: dict[str, _Ends] = {}
        self._waiting: dict[str, list[tuple[_Ends, asyncio.Future[Exit | None]]]] = {}

    def observe(self, address: str, count: int, last: Exit | None) -> None:
        """The pod at ``address`` reported ``count`` ends so far, the latest ``last``.

        A waiter wakes on a new end: a higher count, or another latest end (a container
        waiting out its crash-loop back-off reports its end in ``lastState`` before its
        ``restartCount`` moves)."""
        self._seen[address] = (count, last)
        for (since, before), future in self._waiting.get(address, ()):
            if future.done():
                continue
            if count > since or (last is not None and last != before):
                future.set_result(last)

    def forget(self, address: str) -> None:
        """The pod is gone: nobody will report an exit for it any more."""
        self._seen.pop(address, None)
        for _, future in self._waiting.get(address, ()):
            if not future.done():
                future.set_result(None)

    async def next_exit(self, address: str, *, wait: float = WAIT) -> Exit | None:
        """The next exit the pod at ``address`` reports within ``wait`` seconds, else None.

        Called when a connection to the pod ended: the kubelet's report comes a second or
        so after the process died, never before the activator read the connection's end,
        so an exit reported earlier (one that ended an earlier request) is not this one.
        """
        seen = self._seen.get(address, (0, None))
        future: asyncio.Future[Exit | None] = asyncio.get_running_loop().create_future()
        entry = (seen, future)
        self._waiting.setdefault(address, []).append(entry)
        try:
            async with asyncio.timeout(wait):
                return await future
        except TimeoutError:
            return None
        finally:
            waiting = self._waiting.get(address, [])
            waiting.remove(entry)
            if not waiting:
                self._waiting.pop(address, None)
