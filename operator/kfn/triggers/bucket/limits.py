"""What a sender may make the bucket receiver hold, and for how long.

The receiver runs a thread per connection, so a sender that sends slowly, or says it will
send more than it does, holds a thread and its buffers. Each request therefore has three
deadlines, each over a whole phase rather than per read (a sender dripping one byte a
second never trips a per-read timeout):

* **idle** — a kept-alive connection waiting for its next request is closed after
  :attr:`Limits.idle_timeout` (as the activator's, longer than a store's own pool keeps it);
* **head** — from the request's first byte to the end of its headers, :attr:`Limits.head_timeout`,
  else 408;
* **body** — from the end of the headers to the body's last byte, :attr:`Limits.body_timeout`,
  else 408.

:func:`body_length` decides from the framing headers alone, before a byte of body is read:
a length that is not a plain non-negative integer, or two that disagree, is refused with 400
(a negative one would otherwise read to the connection's end); one over
:attr:`Limits.max_body` with 413; a chunked body with 411 (stores send a ``Content-Length``).
:class:`DeadlineReader` enforces the deadlines on the socket.
"""

from __future__ import annotations

import dataclasses
import io
import math
import socket
import time
from collections.abc import Sequence
from typing import Final

from kfn.clock import Seconds

_MAX_DIGITS: Final = 18


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """The receiver's bounds; the defaults suit a store's notifications (a few KiB each)."""

    max_body: int = 8 * 1024 * 1024
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 65.0
    #: For writing an answer to a sender that does not read it.
    send_timeout: float = 10.0


DEFAULT: Final = Limits()


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused for its framing, before its body is read; the connection closes."""

    status: int
    message: str


def body_length(
    content_lengths: Sequence[str], transfer_encoding: str | None, max_body: int
) -> int | Refusal:
    """The body's length from the ``Content-Length`` headers (all of them, as sent) and
    ``Transfer-Encoding``, or why the request is refused."""
    if transfer_encoding is not None:
        return Refusal(411, "send notifications with a Content-Length; chunked bodies are refused")
    values = {part.strip() for header in content_lengths for part in header.split(",")}
    if not values:
        return 0
    if len(values) > 1:
        return Refusal(400, "the request has conflicting Content-Length values")
    (value,) = values
    if not value.isascii() or not value.isdigit():
        return Refusal(400, f"Content-Length must be a non-negative integer, not {value[:40]!r}")
    # Eighteen digits fit any bound; more are too large whatever they say.
    if len(value) > _MAX_DIGITS or int(value) > max_body:
        return Refusal(413, f"the notification is larger than {max_body} bytes")
    return int(value)


class DeadlineReader(io.RawIOBase):
    """A socket's reading side that fails every read past :attr:`deadline` (monotonic
    seconds): each read waits at most until then, so a phase's deadline bounds all the
    reads within it. Wrapped in a buffered reader, it replaces the handler's ``rfile``."""

    def __init__(self, sock: socket.socket, clock: Seconds = time.monotonic) -> None:
        super().__init__()
        self.sock = sock
        self.clock = clock
        self.deadline = math.inf
        #: The last read failed because the deadline passed.
        self.expired = False

    def start(self, seconds: float) -> None:
        """A new phase: reads may go on for ``seconds`` from now."""
        self.deadline = self.clock() + seconds
        self.expired = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            self.expired = True
            raise TimeoutError("the deadline for reading passed")
        self.sock.settimeout(None if math.isinf(remaining) else remaining)
        try:
            return self.sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise
