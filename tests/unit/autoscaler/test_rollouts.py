"""Aliases moved in steps and back by the autoscaler (:mod:`kfn.autoscaler.rollouts`): what it
writes to the Function's status and the Events it records, on the loopback API, with time
driven explicitly."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import prometheus_client
import pytest

from kfn import kube, rollout, stats
from kfn.api import function as function_api
from kfn.autoscaler import rollouts
from kfn.kube import cache
from tests.unit.autoscaler import watching
from tests.unit.operator import kubeapi

FUNCTIONS = "/apis/kfn.dev/v1alpha1/namespaces/team/functions"
EVENTS = "/api/v1/namespaces/team/events"
HELLO = stats.FunctionKey("team", "hello")
#: A whole second of the wall clock (the status keeps whole seconds).
T0 = 1_800_000_000.0
POLICY = {"steps": [10, 50], "interval": "5m", "minInvocations": 20}

pytestmark = pytest.mark.asyncio


def body(version: int, *, policy: dict[str, Any] | None = POLICY, **status: Any) -> kube.Object:
    alias: dict[str, Any] = {"name": "live", "version": version}
    if policy is not None:
        alias["rollout"] = policy
    obj: kube.Object = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello", "namespace": "team", "uid": "u-1"},
        "spec": {
            "source": {"image": "registry.example/fn@sha256:" + "a" * 64},
            "aliases": [alias],
        },
    }
    if status:
        obj["status"] = status
    return obj


ON_V2 = [{"name": "live", "routes": [{"version": 2, "weight": 100}]}]


class Controller:
    """A :class:`rollouts.Rollouts` acting on the loopback API, fed Functions as a watch
    would (the API's copy, so what it wrote comes back)."""

    def __init__(self, api: kubeapi.KubeApi) -> None:
        self.api = api
        self.rollouts = rollouts.Rollouts(rollouts.KubeWriter())

    def deploy(self, obj: kube.Object) -> None:
        """The user applies ``obj``'s spec; the status stays the API's."""
        found = self.api.get(FUNCTIONS, "hello")
        obj = copy.deepcopy(obj)
        if found is not None and "status" in found:
            obj["status"] = copy.deepcopy(found["status"])
        self.api.put(FUNCTIONS, obj)
        self.watched()

    def watched(self) -> None:
        found = self.api.get(FUNCTIONS, "hello")
        assert found is not None
        fn = function_api.Function.model_validate(copy.deepcopy(found))
        self.rollouts.apply([cache.Change(("team", "hello"), fn)])

    async def tick(self, at: float) -> None:
        await self.rollouts.tick(at)
        self.watched()

    def report(self, at: float, version: str, invocations: int, errors: int, p99: float) -> None:
        durations = {rollout.duration_bin(p99): invocations} if invocations else {}
        stat = stats.FunctionStat(
            HELLO._replace(version=version), 1.0, 1, 0, invocations, invocations, errors, durations
        )
        self.rollouts.receive(stats.StatMessage("act-1", at, (stat,)), at)

    def aliases(self) -> Any:
        found = self.api.get(FUNCTIONS, "hello")
        assert found is not None
        return (found.get("status") or {}).get("aliases")

    def routes(self) -> list[tuple[int, int]]:
        (entry,) = self.aliases()
        return [(r["version"], r["weight"]) for r in entry["routes"]]

    def events(self) -> list[tuple[str, str, str]]:
        """Each Event's reason, type and message, in the order they were created."""
        with self.api.lock:
            created = list(self.api.objects.get(EVENTS, {}).values())
        return [(e["reason"], e["type"], e["message"]) for e in created]

    def writes(self) -> int:
        return sum(1 for method, path in self.api.requests if method in ("PATCH", "POST"))

    def deploy_3_after_2(self) -> None:
        """The alias settled on version 2 (as a rollout leaves it), then the user deploys 3."""
        self.deploy(body(2, aliases=ON_V2))
        self.deploy(body(3))


async def rolling(api: kubeapi.KubeApi) -> Controller:
    """A controller that started moving the alias from version 2 to 3 at ``T0``: 10 % on 3."""
    ctl = Controller(api)
    ctl.deploy_3_after_2()
    await ctl.tick(T0)
    return ctl


async def test_a_v3_failing_30_percent_at_10_percent_rolls_back_to_v2_with_both_error_rates(
    api: kubeapi.KubeApi,
) -> None:
    ctl = Controller(api)
    ctl.deploy(body(2, aliases=ON_V2))
    await ctl.tick(T0)
    assert ctl.writes() == 0  # the alias already routes to its version

    ctl.deploy(body(3))
    await ctl.tick(T0 + 1)
    assert ctl.routes() == [(2, 90), (3, 10)]
    (entry,) = ctl.aliases()
    assert entry["rollout"]["from"] == 2
    assert entry["rollout"]["to"] == 3
    assert entry["rollout"]["outcome"] == "Progressing"
    assert entry["rollout"]["stepStarted"] == rollouts.timestamp(T0 + 1)

    # Both versions through the same window: v3 fails 9 of 30, v2 none of 90.
    ctl.report(T0 + 2, "2", 90, 0, 0.05)
    ctl.report(T0 + 2, "3", 30, 9, 0.05)
    await ctl.tick(T0 + 3)  # at once, long before the step's interval is over

    assert ctl.routes() == [(2, 100)]
    (entry,) = ctl.aliases()
    assert entry["rollout"]["outcome"] == "RolledBack"
    assert "rolled back to version 2" in entry["rollout"]["message"]
    started, rolled_back = ctl.events()
    assert started[:2] == ("Started", "Normal")
    reason, kind, message = rolled_back
    assert (reason, kind) == ("RolledBack", "Warning")
    assert "version 3 failed 30.0 % of 30 invocations against 0.0 % of 90 for version 2" in (
        message
    )
    assert message.startswith("alias live: ")

    # Rolled back, it stays on v2 while the spec still says 3: nothing more is written.
    writes = ctl.writes()
    ctl.report(T0 + 4, "3", 30, 0, 0.05)
    for at in (T0 + 5, T0 + 400, T0 + 4000):
        await ctl.tick(at)
    assert ctl.writes() == writes
    assert ctl.routes() == [(2, 100)]


async def test_a_healthy_candidate_steps_10_then_50_then_takes_all_with_an_event_each(
    api: kubeapi.KubeApi,
) -> None:
    ctl = await rolling(api)
    ctl.report(T0 + 1, "2", 180, 1, 0.040)
    ctl.report(T0 + 1, "3", 20, 0, 0.042)
    await ctl.tick(T0 + 60)  # healthy, but the step's 5m are not over: a hold writes nothing
    writes = ctl.writes()
    await ctl.tick(T0 + 120)
    assert ctl.writes() == writes
    assert ctl.routes() == [(2, 90), (3, 10)]

    await ctl.tick(T0 + 300)
    assert ctl.routes() == [(2, 50), (3, 50)]
    ctl.report(T0 + 301, "2", 100, 0, 0.040)
    ctl.report(T0 + 301, "3", 100, 1, 0.041)
    await ctl.tick(T0 + 600)
    assert ctl.routes() == [(3, 100)]
    (entry,) = ctl.aliases()
    assert entry["rollout"]["outcome"] == "Promoted"
    assert entry["rollout"]["stepStarted"] == rollouts.timestamp(T0 + 600)

    events = ctl.events()
    assert [reason for reason, _, _ in events] == ["Started", "Stepped", "Promoted"]
    assert {kind for _, kind, _ in events} == {"Normal"}
    stepped = next(message for reason, _, message in events if reason == "Stepped")
    assert "version 3 was healthy for 5m at 10 %" in stepped
    assert stepped.endswith("now 50 %")
    promoted = next(message for reason, _, message in events if reason == "Promoted")
    assert "promoted, 100 % to version 3" in promoted


async def test_a_step_waits_for_enough_invocations_of_the_candidate(
    api: kubeapi.KubeApi,
) -> None:
    ctl = await rolling(api)
    ctl.report(T0 + 1, "3", 19, 0, 0.04)
    await ctl.tick(T0 + 300)
    assert ctl.routes() == [(2, 90), (3, 10)]


async def test_changing_the_version_while_a_rollout_runs_starts_a_new_one_from_the_settled(
    api: kubeapi.KubeApi,
) -> None:
    ctl = await rolling(api)
    assert ctl.routes() == [(2, 90), (3, 10)]

    ctl.deploy(body(4))
    await ctl.tick(T0 + 5)
    assert ctl.routes() == [(2, 90), (4, 10)]
    (entry,) = ctl.aliases()
    assert (entry["rollout"]["from"], entry["rollout"]["to"]) == (2, 4)
    assert entry["rollout"]["stepStarted"] == rollouts.timestamp(T0 + 5)
    starts = [m for reason, _, m in ctl.events() if reason == "Started"]
    assert any("10 % to version 4 and 90 % to version 2" in m for m in starts)


async def test_a_new_version_after_a_promotion_starts_from_the_promoted_one(
    api: kubeapi.KubeApi,
) -> None:
    promoted = [
        {
            "name": "live",
            "routes": [{"version": 3, "weight": 100}],
            "rollout": {
                "from": 2,
                "to": 3,
                "step": 2,
                "stepStarted": rollouts.timestamp(T0),
                "outcome": "Promoted",
            },
        }
    ]
    ctl = Controller(api)
    ctl.deploy(body(4, aliases=promoted))
    await ctl.tick(T0 + 1)
    assert ctl.routes() == [(3, 90), (4, 10)]


async def test_setting_the_version_back_while_a_rollout_runs_sends_all_traffic_back_at_once(
    api: kubeapi.KubeApi,
) -> None:
    ctl = await rolling(api)
    ctl.deploy(body(2))
    await ctl.tick(T0 + 1)
    assert ctl.routes() == [(2, 100)]
    (entry,) = ctl.aliases()
    assert entry["rollout"]["outcome"] == "RolledBack"
    assert ("RolledBack", "Warning") in [(r, k) for r, k, _ in ctl.events()]


async def test_an_aliases_first_deploy_routes_all_to_its_version_and_starts_nothing(
    api: kubeapi.KubeApi,
) -> None:
    ctl = Controller(api)
    ctl.deploy(body(2))
    await ctl.tick(T0)
    assert ctl.aliases() == ON_V2
    assert ctl.events() == []


async def test_an_alias_without_a_rollout_gets_no_controller_writes(
    api: kubeapi.KubeApi,
) -> None:
    ctl = Controller(api)
    ctl.deploy(body(2, policy=None))
    await ctl.tick(T0)
    ctl.deploy(body(3, policy=None))
    ctl.report(T0 + 1, "3", 30, 30, 0.05)
    for at in (T0 + 1, T0 + 400):
        await ctl.tick(at)
    assert ctl.writes() == 0
    assert ctl.aliases() is None


async def test_an_alias_whose_rollout_is_removed_loses_its_entry_so_the_spec_routes_it(
    api: kubeapi.KubeApi,
) -> None:
    ctl = await rolling(api)
    ctl.deploy(body(3, policy=None))
    await ctl.tick(T0 + 1)
    assert ctl.aliases() is None


async def test_a_restarted_autoscaler_goes_on_with_the_rollout_its_status_records(
    api: kubeapi.KubeApi,
) -> None:
    await rolling(api)  # by the autoscaler before its restart
    restarted = Controller(api)
    restarted.watched()
    await restarted.tick(T0 + 10)
    restarted.report(T0 + 11, "3", 20, 0, 0.04)
    await restarted.tick(T0 + 300)
    assert restarted.routes() == [(2, 50), (3, 50)]


async def test_only_the_versions_of_a_running_rollout_have_figures_kept(
    api: kubeapi.KubeApi,
) -> None:
    ctl = Controller(api)
    ctl.deploy(body(2, aliases=ON_V2))
    ctl.report(T0, "2", 10, 0, 0.04)
    assert ctl.rollouts.figures.versions() == []
    ctl.deploy(body(3))
    await ctl.tick(T0 + 1)
    ctl.report(T0 + 2, "2", 10, 0, 0.04)
    ctl.report(T0 + 2, "3", 10, 0, 0.04)
    ctl.report(T0 + 2, "", 10, 0, 0.04)  # $LATEST: no rollout judges it
    assert sorted(ctl.rollouts.figures.versions()) == [
        HELLO._replace(version="2"),
        HELLO._replace(version="3"),
    ]


async def test_the_function_watch_feeds_the_rollouts_the_same_changes_as_the_scaling() -> None:
    heard: list[cache.Change[function_api.Function]] = []
    async with watching.function_specs(also=heard.extend) as (server, _):
        await asyncio.to_thread(server.send, [body(2)])
        assert [change.key for change in heard] == [("team", "hello")]


def percent() -> float | None:
    labels = {"namespace": "team", "function": "hello", "alias": "live"}
    return prometheus_client.REGISTRY.get_sample_value(
        "kfn_autoscaler_rollout_candidate_percent", labels
    )


def transitions(reason: str) -> float:
    found = prometheus_client.REGISTRY.get_sample_value(
        "kfn_autoscaler_rollout_transitions_total", {"reason": reason}
    )
    assert found is not None
    return found


async def test_the_candidates_share_and_each_transition_are_exported_until_the_rollout_goes(
    api: kubeapi.KubeApi,
) -> None:
    before = {reason: transitions(reason) for reason in ("Started", "RolledBack", "Stepped")}
    ctl = await rolling(api)
    assert percent() == 10
    ctl.report(T0 + 1, "3", 20, 20, 0.05)
    await ctl.tick(T0 + 2)
    assert percent() == 0
    after = {reason: transitions(reason) for reason in before}
    assert {r: after[r] - before[r] for r in before} == {
        "Started": 1,
        "RolledBack": 1,
        "Stepped": 0,
    }
    ctl.deploy(body(3, policy=None))
    await ctl.tick(T0 + 3)
    assert percent() is None


async def test_a_watch_that_lags_behind_the_status_written_starts_nothing_twice(
    api: kubeapi.KubeApi,
) -> None:
    ctl = Controller(api)
    ctl.deploy_3_after_2()
    stale = ctl.rollouts.functions[HELLO]
    await ctl.rollouts.tick(T0)
    # The watch has not brought the written status back, or brings an older one again.
    await ctl.rollouts.tick(T0 + 1)
    ctl.rollouts.apply([cache.Change(("team", "hello"), stale)])
    await ctl.rollouts.tick(T0 + 2)
    assert [reason for reason, _, _ in ctl.events()] == ["Started"]
    (entry,) = ctl.aliases()
    assert entry["rollout"]["stepStarted"] == rollouts.timestamp(T0)
