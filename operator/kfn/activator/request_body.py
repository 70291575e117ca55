"""A request's bytes on their way to the pod: held, streamed, and kept to send again.

Body bytes that arrive before the request has a connection are held (the client
connection stops reading past :data:`BUFFER_LIMIT`). Once connected, the head and
what was held go out, and the rest streams as it arrives (chunked again when the
client sent it chunked), so a large body never sits in memory. Up to
:data:`REPLAY_LIMIT` of what was sent is kept until the pod answers, so a request
the runtime refused without starting it can be sent again
(:mod:`~kfn.activator.refusal`).
"""

from __future__ import annotations

from kfn.activator import upstream

#: Bytes of request body held while waiting for a pod before reading pauses.
BUFFER_LIMIT = 256 * 1024
#: Requests up to this size (head and body as sent) are kept until the pod answers.
REPLAY_LIMIT = 64 * 1024
_LAST_CHUNK = b"0\r\n\r\n"


class Upload:
    """What one request has sent to its pod, and what it still holds back."""

    __slots__ = (
        "body",
        "chunked",
        "head",
        "held",
        "held_size",
        "kept",
        "sent",
        "size",
        "started",
    )

    def __init__(self) -> None:
        #: The client sent the body chunked: it goes to the pod chunked too.
        self.chunked = False
        self.started = False
        #: The whole request went out.
        self.sent = False
        self.held: list[bytes] | None = None
        self.held_size = 0
        #: What was sent (the head, then the body's pieces as written) while ``kept``:
        #: until the body takes it past REPLAY_LIMIT.
        self.head = b""
        self.body: list[bytes] | None = None
        self.size = 0
        self.kept = False

    @property
    def replayable(self) -> bool:
        """The whole request went out and was kept: it can be sent again."""
        return self.sent and self.kept

    def hold(self, data: bytes) -> int:
        """Keep body bytes that arrived before a connection; returns how many are held."""
        if self.started:
            return self.held_size
        if self.held is None:
            self.held = [data]
        else:
            self.held.append(data)
        self.held_size += len(data)
        return self.held_size

    def start(
        self,
        conn: upstream.UpstreamConnection,
        head: bytes,
        sink: upstream.ResponseSink,
        *,
        head_request: bool,
        complete: bool,
    ) -> None:
        """Send the head and the body held so far, in one write; ``complete``: no more
        body follows."""
        self.started = True
        self.head = head
        self.size = len(head)
        self.kept = True
        held, self.held = self.held, None
        self.held_size = 0
        corked = bool(held) and conn.cork()
        conn.send(head, sink, head_request=head_request)
        if held:
            for data in held:
                self.send(conn, data)
        if complete:
            self.end(conn)
        if corked:
            conn.uncork()

    def send(self, conn: upstream.UpstreamConnection, data: bytes) -> None:
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        conn.write(data)
        if self.kept:
            self._keep(data)

    def end(self, conn: upstream.UpstreamConnection) -> None:
        if self.chunked:
            conn.write(_LAST_CHUNK)
            if self.kept:
                self._keep(_LAST_CHUNK)
        self.sent = True

    def resend(
        self, conn: upstream.UpstreamConnection, sink: upstream.ResponseSink, *, head_request: bool
    ) -> None:
        """Send everything again, complete, on another connection."""
        assert self.kept
        conn.send(self.head, sink, head_request=head_request)
        for data in self.body or ():
            conn.write(data)

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > REPLAY_LIMIT:
            self.kept = False
            self.body = None
        elif self.body is None:
            self.body = [data]
        else:
            self.body.append(data)
