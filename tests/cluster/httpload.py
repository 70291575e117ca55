"""A small asyncio HTTP/1.1 client for sending bounded load to the activator's ClusterIP.

One connection per request (``Connection: close``), so every request goes through the
Service's load balancing on its own. A connection reset or refused before any response
byte arrived is retried once, as a well-behaved client does when a proxy goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
import time
from typing import Any

# Thousands of requests at once hold as many sockets: lift the soft limit on open files.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != resource.RLIM_INFINITY and _soft < 16384:
    resource.setrlimit(
        resource.RLIMIT_NOFILE,
        (16384 if _hard == resource.RLIM_INFINITY else min(16384, _hard), _hard),
    )


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    retried: bool = False

    def json(self) -> Any:
        return json.loads(self.body)


#: The longest one request may take, retries included.
TIMEOUT = 60.0


class _ResetBeforeResponseError(Exception):
    pass


async def request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    retries: int = 1,
) -> Response:
    """One request (at most :data:`TIMEOUT`); a reset before any response byte is retried."""
    started = time.monotonic()
    for attempt in range(retries + 1):
        try:
            async with asyncio.timeout(TIMEOUT):
                status, head, data = await _once(
                    host, port, f"{method} {path}", body, headers or {}
                )
        except _ResetBeforeResponseError:
            if attempt == retries:
                raise
            await asyncio.sleep(0.05)
            continue
        return Response(status, head, data, time.monotonic() - started, retried=attempt > 0)
    raise AssertionError("unreachable")


async def _once(
    host: str, port: int, target: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise _ResetBeforeResponseError(str(exc)) from exc
    try:
        lines = [f"{target} HTTP/1.1", "Connection: close"]
        if not any(name.lower() == "host" for name in headers):
            lines.append(f"Host: {host}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            status_line = await reader.readline()
        except OSError as exc:
            raise _ResetBeforeResponseError(str(exc)) from exc
        if not status_line:
            raise _ResetBeforeResponseError("closed before a response")
        status = int(status_line.split(b" ", 2)[1])
        head: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode().partition(":")
            head[name.strip().lower()] = value.strip()
        if "content-length" in head:
            data = await reader.readexactly(int(head["content-length"]))
        else:
            data = await reader.read()
        return status, head, data
    finally:
        writer.close()
