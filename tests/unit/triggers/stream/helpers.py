"""The smallest batch source, for tests that invoke a function through a stream Consumer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kfn.triggers.stream import batching, source


class BytesSource(source.BatchSource[bytes]):
    """A partition's batch source reduced to what invoking needs: its records are their bytes,
    sent as a JSON array; nothing to commit."""

    def encode(self, records: Sequence[batching.Record[bytes]]) -> bytes:
        return b"[" + b",".join(r.raw for r in records) + b"]"

    def where(self, records: Sequence[batching.Record[bytes]]) -> str:
        return f"positions {records[0].position}..{records[-1].position}"

    def batch_info(self, records: Sequence[batching.Record[bytes]]) -> dict[str, Any]:
        return {}

    def key(self, records: Sequence[batching.Record[bytes]]) -> bytes:
        return b""

    def commit(self, last: batching.Record[bytes]) -> None:
        pass
