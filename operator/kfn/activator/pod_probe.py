"""The activator's own readiness probe of a function pod, and what its answer means.

A runtime answers ``GET /_kfn/ready`` with 200 once its handler loaded. When loading
failed it answers 503 with ``Kfn-Init-Error: <errorType>`` (the runtime contract,
section 5a): the pod cannot run the handler, but it answers every invocation at once
with Lambda's init error. Such a pod is worth routing to when the function has no
better one, so that callers get that error instead of waiting for their timeout;
:class:`~kfn.activator.discovery.PodTracker` decides that.

A runtime that finished loading says when in ``Kfn-Init-Timing: start=..;boot=..;imported=..``
(its process's start, the runtime loaded, the handler imported: wall-clock seconds), which
a cold start's phases are decided from (:mod:`~kfn.activator.cold_start`).
"""

from __future__ import annotations

import asyncio
import enum
import typing

from kfn.activator import cold_start

#: The runtime contract's port and paths.
POD_PORT = 8080
READY_PATH = "/_kfn/ready"
#: Longest head read from a probe's answer; a runtime's is far shorter.
HEAD_LIMIT = 8192
TIMEOUT = 0.5


class Answer(enum.Enum):
    """What one probe found."""

    READY = "ready"
    """The handler loaded: route to the pod."""
    INIT_ERROR = "init error"
    """The handler failed to load: the pod answers every invocation with that error."""
    NOT_READY = "not ready"
    """Still loading, draining, stuck or unreachable: ask again later."""


class Probed(typing.NamedTuple):
    """One probe's answer, and the runtime's ``Kfn-Init-Timing`` when it sent one."""

    answer: Answer
    init: tuple[float | None, float, float] | None = None


def init_timing(head: bytes) -> tuple[float | None, float, float] | None:
    """The ``Kfn-Init-Timing`` of an answer's head (start, boot, imported), or None."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"kfn-init-timing":
            return cold_start.parse_init_timing(value.strip())
    return None


def read(head: bytes) -> Answer:
    """The meaning of an answer's head (status line and headers)."""
    status_line, _, headers = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2:
        return Answer.NOT_READY
    if parts[1] == b"200":
        return Answer.READY
    if parts[1] == b"503" and any(
        line.lower().startswith(b"kfn-init-error:") for line in headers.split(b"\r\n")
    ):
        return Answer.INIT_ERROR
    return Answer.NOT_READY


async def probe(ip: str, port: int = POD_PORT) -> Probed:
    """One ``GET /_kfn/ready``, bounded by :data:`TIMEOUT`."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection(ip, port, limit=HEAD_LIMIT)
            writer.write(
                f"GET {READY_PATH} HTTP/1.1\r\nHost: {ip}:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        head = exc.partial
    except (OSError, TimeoutError, asyncio.LimitOverrunError):
        return Probed(Answer.NOT_READY)
    finally:
        if writer is not None:
            writer.close()
    answer = read(head)
    return Probed(answer, init_timing(head) if answer is Answer.READY else None)
