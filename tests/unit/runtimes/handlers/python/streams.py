"""Streaming handlers for the streaming tests and benchmark; each has a twin in streams.js.

A *gate* is a FIFO the test names in the event (``gate``, or the query string's ``gate`` on an
HTTP event): opening it for reading blocks until the test opens it for writing, so a handler
waits on the test's signal rather than on time.
"""

import asyncio
import json
from typing import Any


def _gate(event: dict[str, Any]) -> str:
    return str(event.get("gate") or (event.get("queryStringParameters") or {})["gate"])


def _read(path: str) -> bytes:
    with open(path, "rb") as gate:
        return gate.read()


def gated(event, context):
    """A prelude and a first chunk, then the rest once the test opened the gate."""
    yield {
        "statusCode": 201,
        "headers": {"Content-Type": "text/plain", "X-Stream": "yes"},
        "cookies": ["step=1"],
    }
    yield "first\n"
    yield b"after gate: " + _read(_gate(event))


async def async_gated(event, context):
    """As ``gated``, from an async generator."""
    yield {
        "statusCode": 201,
        "headers": {"Content-Type": "text/plain", "X-Stream": "yes"},
        "cookies": ["step=1"],
    }
    yield "first\n"
    yield b"after gate: " + await asyncio.to_thread(_read, _gate(event))


def bare(event, context):
    """Body pieces only: no prelude."""
    yield b"\x00\x01"
    yield "binary"
    yield "\u00e9"


def returns_iterator(event, context):
    """A plain handler returning an iterator streams too."""
    return iter([b"\x00\x01", b"binary", "\u00e9"])


def fails_midway(event, context):
    yield b"partial"
    raise ValueError("failed midway")


def fails_first(event, context):
    raise ValueError("failed midway")
    yield b"never"  # a generator all the same


def stuck_midway(event, context):
    """Sends a piece, then waits for a gate the test opens only after the deadline."""
    yield b"partial"
    _read(_gate(event))
    yield b"too late"


def flood(event, context):
    """``mib`` MiB in 64 KiB pieces (from the event, or the query string on an HTTP event)."""
    mib = int(event.get("mib") or (event.get("queryStringParameters") or {}).get("mib") or 1)
    piece = b"x" * 65536
    for _ in range(mib * 16):
        yield piece


def first_byte(event, context):
    """One small piece at once, for time to first byte."""
    yield json.dumps({"ok": True})


def endless(event, context):
    """Streams until its client goes away; says so when it is stopped."""
    try:
        while True:
            yield b"x" * 65536
    finally:
        print("stream stopped")
