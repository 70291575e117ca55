"""Rollout decisions: steps, holds, rollbacks and promotions, with time passed in."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from kfn import rollout

POLICY = rollout.RolloutPolicy(
    steps=(10, 50),
    interval=300.0,
    max_error_rate_increase=5.0,
    max_duration_increase=50.0,
    min_invocations=20,
)
T0 = 1_000_000.0
STABLE, CANDIDATE = 2, 3


def figures(invocations: int, errors: int = 0, p99: float | None = 0.2) -> rollout.VersionFigures:
    return rollout.VersionFigures(invocations, errors, p99)


HEALTHY_STABLE = figures(1080, 0, 0.2)
HEALTHY_CANDIDATE = figures(120, 0, 0.21)


def started() -> rollout.RolloutState:
    return rollout.start(POLICY, STABLE, CANDIDATE, T0)


def test_a_rollout_starts_with_the_first_step_to_the_candidate() -> None:
    state = started()
    assert state.outcome is rollout.Outcome.PROGRESSING
    assert rollout.routes(POLICY, state) == ((STABLE, 90), (CANDIDATE, 10))
    assert state.message == (
        "routing 10 % to version 3 and 90 % to version 2; 50 % after 5m if version 3 stays healthy"
    )


def test_a_candidate_failing_30_percent_rolls_back_at_the_first_judged_step_naming_both_rates() -> (
    None
):
    state = started()
    # Ten seconds into a five-minute step: the candidate has enough invocations to be judged.
    decision = rollout.decide(POLICY, state, figures(1080, 0), figures(120, 36), T0 + 10)

    assert decision.action is rollout.Action.ROLL_BACK
    assert decision.routes == ((STABLE, 100),)
    assert decision.state.outcome is rollout.Outcome.ROLLED_BACK
    assert decision.state.reason == "ErrorRateIncreased"
    assert decision.message == (
        "version 3 failed 30.0 % of 120 invocations against 0.0 % of 1,080 for version 2,"
        " above the allowed 5 points: rolled back to version 2"
    )
    assert decision.state.message == decision.message


def test_a_failing_candidate_with_too_few_invocations_holds_until_it_has_enough() -> None:
    state = started()
    held = rollout.decide(POLICY, state, HEALTHY_STABLE, figures(19, 19), T0 + 10)
    assert held.action is rollout.Action.HOLD
    assert held.state is state
    judged = rollout.decide(POLICY, state, HEALTHY_STABLE, figures(20, 19), T0 + 11)
    assert judged.action is rollout.Action.ROLL_BACK


def test_a_healthy_candidate_walks_10_then_50_then_100_at_the_intervals() -> None:
    state = started()
    changes: list[tuple[float, rollout.Action, tuple[rollout.Route, ...]]] = []
    for second in range(1, 1000):
        now = T0 + second
        decision = rollout.decide(POLICY, state, HEALTHY_STABLE, HEALTHY_CANDIDATE, now)
        assert sum(route.percent for route in decision.routes) == 100
        if decision.state != state:
            changes.append((now - T0, decision.action, decision.routes))
        state = decision.state

    assert changes == [
        (300, rollout.Action.STEP, ((STABLE, 50), (CANDIDATE, 50))),
        (600, rollout.Action.PROMOTE, ((CANDIDATE, 100),)),
    ]
    assert state.outcome is rollout.Outcome.PROMOTED
    assert state.message.startswith("version 3 was healthy for 5m at 50 % (version 3 failed 0.0")
    assert state.message.endswith(": promoted, 100 % to version 3")


def test_a_healthy_step_holds_and_says_when_the_next_step_comes() -> None:
    state = started()
    decision = rollout.decide(POLICY, state, HEALTHY_STABLE, HEALTHY_CANDIDATE, T0 + 170)
    assert decision.action is rollout.Action.HOLD
    assert decision.state is state
    assert decision.routes == ((STABLE, 90), (CANDIDATE, 10))
    assert decision.message == (
        "version 3 is healthy at 10 % (version 3 failed 0.0 % of 120, p99 210 ms;"
        " version 2 failed 0.0 % of 1,080, p99 200 ms); 50 % in 2m10s"
    )


def test_too_few_invocations_hold_even_after_the_interval_and_say_how_many_are_needed() -> None:
    state = started()
    held = rollout.decide(POLICY, state, HEALTHY_STABLE, figures(19), T0 + 900)
    assert held.action is rollout.Action.HOLD
    assert held.state is state
    assert held.routes == ((STABLE, 90), (CANDIDATE, 10))
    assert held.message == (
        "holding 10 % on version 3: 19 invocations in the last 5m,"
        " and a step is judged on at least 20"
    )
    # Enough at last: the interval is long over, so the step comes at once.
    stepped = rollout.decide(POLICY, state, HEALTHY_STABLE, figures(20), T0 + 901)
    assert stepped.action is rollout.Action.STEP
    assert stepped.state.step_started_at == T0 + 901


def test_a_p99_duration_regression_rolls_back_and_says_by_how_much() -> None:
    decision = rollout.decide(
        POLICY, started(), figures(1080, 0, 0.21), figures(120, 0, 0.84), T0 + 30
    )
    assert decision.action is rollout.Action.ROLL_BACK
    assert decision.state.reason == "DurationIncreased"
    assert decision.routes == ((STABLE, 100),)
    assert decision.message == (
        "version 3's p99 duration was 840 ms against 210 ms for version 2 (+300 %),"
        " above the allowed 50 %: rolled back to version 2"
    )


@pytest.mark.parametrize(
    ("candidate_p99", "action"),
    [(0.29, rollout.Action.HOLD), (0.3, rollout.Action.HOLD), (0.31, rollout.Action.ROLL_BACK)],
)
def test_a_p99_duration_is_rolled_back_only_above_the_allowed_percent(
    candidate_p99: float, action: rollout.Action
) -> None:
    decision = rollout.decide(
        POLICY, started(), figures(1080, 0, 0.2), figures(120, 0, candidate_p99), T0 + 30
    )
    assert decision.action is action


@pytest.mark.parametrize(("stable_p99", "candidate_p99"), [(None, 9.0), (0.2, None)])
def test_p99_durations_are_compared_only_when_both_versions_have_one(
    stable_p99: float | None, candidate_p99: float | None
) -> None:
    decision = rollout.decide(
        POLICY, started(), figures(1080, 0, stable_p99), figures(120, 0, candidate_p99), T0 + 30
    )
    assert decision.action is rollout.Action.HOLD


@pytest.mark.parametrize(
    ("stable_errors", "candidate_errors", "action"),
    [
        # 1,000 and 100 invocations: 10.0 % against 5.0 % is exactly the allowed 5 points.
        (50, 10, rollout.Action.HOLD),
        (50, 11, rollout.Action.ROLL_BACK),
        (0, 5, rollout.Action.HOLD),
        (0, 6, rollout.Action.ROLL_BACK),
    ],
)
def test_error_rates_are_compared_in_percentage_points_and_the_margin_itself_is_allowed(
    stable_errors: int, candidate_errors: int, action: rollout.Action
) -> None:
    decision = rollout.decide(
        POLICY, started(), figures(1000, stable_errors), figures(100, candidate_errors), T0 + 30
    )
    assert decision.action is action


def test_a_stable_version_with_too_few_invocations_counts_as_failing_nothing() -> None:
    # One failure in three would excuse the candidate's 6 %; three are no baseline.
    decision = rollout.decide(POLICY, started(), figures(3, 1, 9.0), figures(100, 6), T0 + 30)
    assert decision.action is rollout.Action.ROLL_BACK
    assert decision.message == (
        "version 3 failed 6.0 % of 100 invocations against 0.0 % for version 2 (its 3"
        " invocations are too few to compare with, so it counts as 0.0 %), above the allowed"
        " 5 points: rolled back to version 2"
    )


def test_both_figures_worse_are_both_named() -> None:
    decision = rollout.decide(
        POLICY, started(), figures(1080, 0, 0.2), figures(120, 60, 2.5), T0 + 30
    )
    assert decision.state.reason == "ErrorRateAndDurationIncreased"
    assert decision.message == (
        "version 3 failed 50.0 % of 120 invocations against 0.0 % of 1,080 for version 2,"
        " above the allowed 5 points; version 3's p99 duration was 2.5 s against 200 ms for"
        " version 2 (+1150 %), above the allowed 50 %: rolled back to version 2"
    )


def test_a_candidate_that_turns_bad_at_a_later_step_rolls_back_at_once() -> None:
    state = rollout.decide(POLICY, started(), HEALTHY_STABLE, HEALTHY_CANDIDATE, T0 + 300).state
    assert rollout.routes(POLICY, state) == ((STABLE, 50), (CANDIDATE, 50))
    decision = rollout.decide(POLICY, state, figures(600, 0), figures(600, 120), T0 + 301)
    assert decision.action is rollout.Action.ROLL_BACK
    assert decision.routes == ((STABLE, 100),)
    assert decision.state.step_started_at == T0 + 301


def test_a_rolled_back_rollout_stays_rolled_back_however_good_the_figures_become() -> None:
    rolled_back = rollout.decide(POLICY, started(), HEALTHY_STABLE, figures(120, 60), T0 + 1).state
    for later in (2.0, 300.0, 10_000.0):
        decision = rollout.decide(
            POLICY, rolled_back, HEALTHY_STABLE, HEALTHY_CANDIDATE, T0 + later
        )
        assert decision.action is rollout.Action.NO_CHANGE
        assert decision.state is rolled_back
        assert decision.routes == ((STABLE, 100),)
        assert decision.message == rolled_back.message


def test_a_promoted_rollout_stays_promoted_however_bad_the_figures_become() -> None:
    state = started()
    for now in (T0 + 300, T0 + 600):
        state = rollout.decide(POLICY, state, HEALTHY_STABLE, HEALTHY_CANDIDATE, now).state
    assert state.outcome is rollout.Outcome.PROMOTED
    decision = rollout.decide(POLICY, state, HEALTHY_STABLE, figures(5000, 5000, 99.0), T0 + 601)
    assert decision.action is rollout.Action.NO_CHANGE
    assert decision.state is state
    assert decision.routes == ((CANDIDATE, 100),)


def test_a_single_step_policy_promotes_after_its_one_step() -> None:
    policy = dataclasses.replace(POLICY, steps=(25,))
    state = rollout.start(policy, STABLE, CANDIDATE, T0)
    assert state.message.endswith("100 % after 5m if version 3 stays healthy")
    decision = rollout.decide(policy, state, HEALTHY_STABLE, HEALTHY_CANDIDATE, T0 + 300)
    assert decision.action is rollout.Action.PROMOTE
    assert decision.state.step == 1


def test_a_policy_edited_to_fewer_steps_mid_rollout_goes_on_from_its_last_step() -> None:
    long = dataclasses.replace(POLICY, steps=(10, 30, 60))
    state = started()
    for now in (T0 + 300, T0 + 600):
        state = rollout.decide(long, state, HEALTHY_STABLE, HEALTHY_CANDIDATE, now).state
    assert state.step == 2
    assert rollout.routes(POLICY, state) == ((STABLE, 50), (CANDIDATE, 50))
    decision = rollout.decide(POLICY, state, HEALTHY_STABLE, HEALTHY_CANDIDATE, T0 + 900)
    assert decision.action is rollout.Action.PROMOTE


def test_the_judging_window_defaults_to_the_interval() -> None:
    assert rollout.RolloutPolicy(interval=120.0).judging_window == 120.0
    assert rollout.RolloutPolicy(interval=120.0, window=60.0).judging_window == 60.0


def test_a_rollout_to_the_version_it_comes_from_is_refused() -> None:
    with pytest.raises(ValueError, match="both are version 2"):
        rollout.start(POLICY, 2, 2, T0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": ()}, r"rollout.steps must name at least one percent below 100"),
        ({"steps": (0, 50)}, r"whole percents from 1 to 99, got 0 \(100 is the implied"),
        ({"steps": (10, 100)}, r"whole percents from 1 to 99, got 100"),
        ({"steps": (10, 12.5)}, r"whole percents from 1 to 99, got 12.5"),
        ({"steps": (True,)}, r"whole percents from 1 to 99, got True"),
        ({"steps": (50, 10)}, r"must grow from one step to the next, got 10 after 50"),
        ({"steps": (10, 10)}, r"must grow from one step to the next, got 10 after 10"),
        ({"interval": 0.0}, r"rollout.interval must be a positive time, such as 5m, got 0.0"),
        ({"interval": math.inf}, r"rollout.interval must be a positive time"),
        ({"window": -1.0}, r"rollout.window must be a positive time"),
        ({"max_error_rate_increase": -1.0}, r"maxErrorRateIncrease is in percentage points"),
        ({"max_error_rate_increase": 101.0}, r"from 0 to 100, got 101.0"),
        ({"max_error_rate_increase": math.nan}, r"maxErrorRateIncrease"),
        ({"max_duration_increase": -5.0}, r"maxDurationIncrease is a percent of 0 or more"),
        ({"min_invocations": 0}, r"minInvocations must be at least 1 .*, got 0"),
    ],
)
def test_an_invalid_policy_is_refused_with_a_message_naming_the_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rollout.RolloutPolicy(**fields)


@pytest.mark.parametrize(
    ("invocations", "errors", "p99"),
    [(10, 11, None), (-1, 0, None), (5, 0, -0.1), (5, 0, math.nan)],
)
def test_impossible_figures_are_refused(invocations: int, errors: int, p99: float | None) -> None:
    with pytest.raises(ValueError, match=r"errors <= invocations|p99 duration"):
        rollout.VersionFigures(invocations, errors, p99)
