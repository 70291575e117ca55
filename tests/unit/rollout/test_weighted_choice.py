"""The per-request choice of a version: a uniform draw against cumulative percents."""

from __future__ import annotations

import math
import random

import pytest

from kfn import rollout

BELOW_ONE = math.nextafter(1.0, 0.0)


def seeded(seed: int) -> random.Random:
    """Draws that repeat exactly from run to run; no secret depends on them."""
    return random.Random(seed)  # noqa: S311


@pytest.mark.parametrize("seed", [7, 2026])
def test_a_90_10_split_over_100000_seeded_draws_lands_within_the_binomial_99_percent_interval(
    seed: int,
) -> None:
    rng = seeded(seed)
    routes = (rollout.Route(2, 90), rollout.Route(3, 10))
    draws = 100_000
    to_candidate = sum(rollout.choose(routes, rng.random()) == 3 for _ in range(draws))
    # Binomial(100,000, 0.1): mean 10,000, standard deviation sqrt(n p (1 - p)) = 94.9;
    # 99 % of outcomes lie within 2.576 standard deviations of the mean.
    half_width = 2.576 * math.sqrt(draws * 0.1 * 0.9)
    assert abs(to_candidate - 10_000) <= half_width


def test_each_route_takes_the_draws_of_its_own_slice_of_the_unit_interval() -> None:
    routes = ((2, 90), (3, 10))
    assert rollout.choose(routes, 0.0) == 2
    assert rollout.choose(routes, math.nextafter(0.9, 0.0)) == 2
    assert rollout.choose(routes, 0.9) == 3
    assert rollout.choose(routes, BELOW_ONE) == 3


@pytest.mark.parametrize(
    "routes", [((2, 0), (3, 100)), ((2, 100), (3, 0)), ((2, 0), (3, 50), (4, 0), (5, 50), (6, 0))]
)
def test_a_0_percent_route_is_never_chosen(routes: tuple[tuple[int, int], ...]) -> None:
    rng = seeded(1)
    draws = [0.0, BELOW_ONE, 0.5, math.nextafter(0.5, 0.0)] + [rng.random() for _ in range(10_000)]
    zero = {version for version, percent in routes if percent == 0}
    assert {rollout.choose(routes, draw) for draw in draws}.isdisjoint(zero)


def test_a_100_percent_route_is_always_chosen() -> None:
    rng = seeded(2)
    draws = [0.0, BELOW_ONE] + [rng.random() for _ in range(10_000)]
    assert {rollout.choose([(7, 100)], draw) for draw in draws} == {7}


def test_the_routes_of_a_decision_are_what_choose_takes() -> None:
    policy = rollout.RolloutPolicy(steps=(25,))
    state = rollout.start(policy, 1, 2, 0.0)
    routes = rollout.routes(policy, state)
    assert [rollout.choose(routes, draw) for draw in (0.0, 0.74, 0.75, 0.99)] == [1, 1, 2, 2]


@pytest.mark.parametrize("draw", [-0.1, 1.0, 1.5, math.nan])
def test_a_draw_outside_zero_to_one_is_refused(draw: float) -> None:
    with pytest.raises(ValueError, match=r"a draw is in \[0, 1\)"):
        rollout.choose([(1, 100)], draw)


@pytest.mark.parametrize("routes", [[], [(1, 90)], [(1, 60), (2, 60)], [(1, 110), (2, -10)]])
def test_routes_that_do_not_sum_to_100_are_refused(routes: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError, match="percents of 0 or more that sum to 100"):
        rollout.choose(routes, 0.5)
