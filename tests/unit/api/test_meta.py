"""Durations and quantities are read the way the API server reads them."""

from __future__ import annotations

import datetime

import pytest

from kfn.api import meta


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("2h0m10s", 7210),
    ],
)
def test_duration_parses_like_go(text: str, seconds: float) -> None:
    assert meta.parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "-5s", "5 m", "1d", "1.s", "s"])
def test_duration_without_a_unit_or_with_a_sign_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        meta.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("128Mi", 128 * 2**20), ("1Gi", 2**30), ("512M", 512 * 10**6), ("1000", 1000)],
)
def test_memory_quantity_in_bytes(text: str, expected: int) -> None:
    assert meta.parse_memory_bytes(text) == expected


@pytest.mark.parametrize("text", ["128MB", "1.5Gi", "-1Mi", "Mi"])
def test_memory_quantity_outside_the_pattern_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a memory quantity"):
        meta.parse_memory_bytes(text)


@pytest.mark.parametrize(
    ("text", "millis"), [("250m", 250), ("1", 1000), ("0.5", 500), ("2.125", 2125)]
)
def test_cpu_quantity_in_millicores(text: str, millis: int) -> None:
    assert meta.parse_cpu_millis(text) == millis


def test_condition_times_are_written_as_the_api_server_writes_them() -> None:
    condition = meta.Condition(
        type="Ready",
        status="True",
        reason="Ready",
        last_transition_time=datetime.datetime(
            2024, 5, 1, 14, 0, 0, 123, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
    )
    dumped = condition.model_dump(mode="json", by_alias=True)
    assert dumped["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_naive_times_are_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        meta.format_time(datetime.datetime(2024, 5, 1))


def test_a_duration_too_long_for_python_is_a_value_error_not_an_overflow() -> None:
    assert meta.duration_micros("99999999999999h") == 99999999999999 * 3600 * 10**6
    with pytest.raises(ValueError, match="longer than any duration"):
        meta.parse_duration("99999999999999h")


def test_a_duration_bound_refuses_a_duration_too_long_for_python() -> None:
    (at_most,) = meta.DurationRange(maximum="6h").rules
    assert at_most.check is not None
    assert at_most.check("6h")
    assert not at_most.check("99999999999999h")
