"""When this process started, was booted and had its handler imported: ``Kfn-Init-Timing``.

The activator splits a cold start into phases with these (CONTRACT.md §2): ``start`` is the
process's own start as the kernel recorded it (``/proc/self/stat``'s ``starttime``, in clock
ticks since the machine booted: 10 ms resolution), ``boot`` when the runtime, loaded, began to
load the handler, ``imported`` when loading the handler's module ended. All are
unix seconds.

``starttime`` is turned into unix time through the clock it counts on (``CLOCK_BOOTTIME``, the
time since boot): ``now - (since boot now - starttime)``. Adding ``/proc/stat``'s ``btime``
instead would be off by up to a second, as ``btime`` is a whole number of seconds.
"""

from __future__ import annotations

import os
import time

#: The header carrying the three times on the probes' answers once loading ended.
HEADER = "Kfn-Init-Timing"


def process_start(stat: str, clock_ticks: int, since_boot_s: float, now_s: float) -> float | None:
    """The unix time a process started, from its ``/proc/<pid>/stat`` line, given the clock
    tick rate and, read together, the time since boot and the unix time now; None if the line
    does not say (an unexpected format)."""
    # The command name (field 2) is in parentheses and may hold spaces: fields after it are
    # counted from the last ")"; ``starttime`` is field 22, the 20th after the name.
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or clock_ticks <= 0 or not fields[19].isdigit():
        return None
    return now_s - (since_boot_s - int(fields[19]) / clock_ticks)


def read_process_start() -> float | None:
    """This process's start time (unix seconds), or None where ``/proc`` cannot tell it."""
    try:
        with open("/proc/self/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        ticks = os.sysconf("SC_CLK_TCK")
        since_boot, now = time.clock_gettime(time.CLOCK_BOOTTIME), time.time()
    except (OSError, ValueError, AttributeError):
        return None
    return process_start(stat, ticks, since_boot, now)


def header_value(start: float | None, boot: float, imported: float) -> str:
    """``start=<s>;boot=<s>;imported=<s>``, decimal unix seconds with 6 digits. A start the
    system cannot tell is left out (never invented)."""
    parts = [] if start is None else [f"start={start:.6f}"]
    parts += [f"boot={boot:.6f}", f"imported={imported:.6f}"]
    return ";".join(parts)
