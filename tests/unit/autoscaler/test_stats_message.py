"""The stats message: encoding, decoding and validation."""

from __future__ import annotations

import json

import pytest

from kfn import stats

MESSAGE = stats.StatMessage(
    activator="act-1",
    timestamp=1700000000.25,
    functions=(
        stats.FunctionStat(stats.FunctionKey("default", "hello"), 2.5, 4, 1, 37),
        stats.FunctionStat(stats.FunctionKey("team", "resize"), 0.0, 0, 3, 0),
    ),
    poke=True,
)


def test_message_survives_encoding_and_decoding() -> None:
    assert stats.decode(stats.encode(MESSAGE)) == MESSAGE


def test_encoding_is_compact_json_with_the_documented_keys() -> None:
    body = json.loads(stats.encode(MESSAGE))
    assert set(body) == {"v", "a", "t", "poke", "f"}
    assert body["f"][0] == {"ns": "default", "n": "hello", "c": 2.5, "p": 4, "q": 1, "r": 37}
    assert b" " not in stats.encode(MESSAGE)


def _entry(**fields: object) -> bytes:
    entry = {"ns": "d", "n": "f", "c": 1, "p": 1, "q": 0, "r": 0, **fields}
    entry = {k: v for k, v in entry.items() if v is not None}
    return json.dumps({"v": 1, "a": "x", "t": 1, "f": [entry]}).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "a": "x", "t": 1, "f": []}',
        b'{"v": 1, "a": "", "t": 1, "f": []}',
        b'{"v": 1, "a": "x", "t": -1, "f": []}',
        b'{"v": 1, "a": "x", "t": 1, "f": {}}',
        b'{"v": 1, "a": "x", "t": 1, "poke": 1, "f": []}',
        _entry(p=1.5),
        _entry(q=-1),
        _entry(ns=None),
        _entry(c=True),
        _entry(c=float("inf")),
    ],
)
def test_invalid_messages_are_rejected(body: bytes) -> None:
    with pytest.raises(stats.StatsError):
        stats.decode(body)
