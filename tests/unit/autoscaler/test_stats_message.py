"""The stats message: encoding, decoding and validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kfn import rollout, stats

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
        # A version is its number as text.
        _entry(v=3),
        _entry(v="03"),
        _entry(v="live"),
    ],
)
def test_invalid_messages_are_rejected(body: bytes) -> None:
    with pytest.raises(stats.StatsError):
        stats.decode(body)


def test_an_entry_without_a_version_is_for_latest_and_one_with_it_for_that_version() -> None:
    latest, three = stats.decode(_entry()), stats.decode(_entry(v="3"))
    assert latest.functions[0].function == stats.FunctionKey("d", "f", "")
    assert three.functions[0].function == stats.FunctionKey("d", "f", "3")


# --- the figures a rollout judges ----------------------------------------------------------------

FIGURES = stats.StatMessage(
    activator="act-1",
    timestamp=1.0,
    functions=(
        stats.FunctionStat(
            stats.FunctionKey("team", "hello", "3"), 1.0, 2, 0, 12, 10, 3, {130: 7, 0: 1}
        ),
    ),
)


def test_a_versions_invocations_errors_and_duration_bins_survive_encoding_and_decoding() -> None:
    assert stats.decode(stats.encode(FIGURES)) == FIGURES
    entry = json.loads(stats.encode(FIGURES))["f"][0]
    assert (entry["i"], entry["e"], entry["d"]) == (10, 3, {"0": 1, "130": 7})


def test_an_entry_without_figures_encodes_none_and_decodes_as_zero() -> None:
    entry = json.loads(stats.encode(MESSAGE))["f"][0]
    assert not {"i", "e", "d"} & set(entry)
    (stat,) = stats.decode(_entry()).functions
    assert (stat.invocations, stat.errors, stat.durations) == (0, 0, {})


def test_the_stats_message_knows_as_many_duration_bins_as_the_rollout_decisions() -> None:
    assert stats.DURATION_BINS == rollout.BINS


@pytest.mark.parametrize(
    "fields",
    [
        {"i": -1},
        {"i": 1.0},
        {"e": True},
        # Failures are counted among the invocations.
        {"i": 2, "e": 3},
        {"e": 1},
        {"d": [1, 2]},
        {"d": {"x": 1}},
        {"d": {"-1": 1}},
        {"d": {"01": 1}},
        {"d": {"416": 1}},
        {"d": {"3": 0}},
        {"d": {"3": 1.5}},
    ],
)
def test_malformed_figures_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(stats.StatsError):
        stats.decode(_entry(**fields))


def test_a_stat_with_more_errors_than_invocations_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="errors <= invocations"):
        stats.FunctionStat(stats.FunctionKey("d", "f"), 0.0, 0, 0, 0, invocations=1, errors=2)


def test_a_wake_count_survives_the_wire_and_is_left_out_when_zero() -> None:
    woken = stats.FunctionStat(stats.FunctionKey("ns", "fn"), 0.0, 0, 0, 0, wakes=2)
    message = stats.StatMessage("act", 1.0, (woken,), poke=True)
    assert stats.decode(stats.encode(message)).functions[0].wakes == 2
    plain = stats.StatMessage("act", 1.0, (dataclasses.replace(woken, wakes=0),))
    assert b'"w"' not in stats.encode(plain)
