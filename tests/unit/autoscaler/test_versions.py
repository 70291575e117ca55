"""Versions scaled apart from ``$LATEST``: each routed version in its own Deployment
``<function>-v<N>``, with its Function's scale settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kfn import kube, stats
from kfn.autoscaler import autoscaler, cluster, scaling
from tests.unit.autoscaler import watching
from tests.unit.operator import kubeapi

HELLO = stats.FunctionKey("team", "hello")
V2 = HELLO._replace(version="2")
DEPLOYMENTS = "/apis/apps/v1/namespaces/team/deployments"


def test_a_version_runs_in_the_deployment_named_after_it_and_latest_in_the_functions() -> None:
    assert cluster.deployment_name(HELLO) == "hello"
    assert cluster.deployment_name(V2) == "hello-v2"


@pytest.mark.asyncio
async def test_a_poke_for_a_version_scales_its_own_deployment_and_not_latests(
    api: kubeapi.KubeApi,
) -> None:
    for name in ("hello", "hello-v2"):
        api.put(DEPLOYMENTS, {"metadata": {"name": name}, "spec": {"replicas": 0}})
    loop = autoscaler.Autoscaler(cluster.KubeScaler())
    loop.set_spec(V2, scaling.ScaleSpec())
    loop.set_spec(HELLO, scaling.ScaleSpec())
    message = stats.StatMessage("act-1", 0.0, (stats.FunctionStat(V2, 0.0, 0, 1, 1),), poke=True)
    await loop.receive(message, now=10.0)
    replicas = {
        name: api.get(DEPLOYMENTS, name)["spec"]["replicas"] for name in ("hello", "hello-v2")
    }  # type: ignore[index]
    assert replicas == {"hello": 0, "hello-v2": 1}


@pytest.mark.asyncio
async def test_a_version_without_its_deployment_yet_is_not_scaled(api: kubeapi.KubeApi) -> None:
    loop = autoscaler.Autoscaler(cluster.KubeScaler())
    loop.set_spec(V2, scaling.ScaleSpec())
    with pytest.raises(cluster.WorkloadMissingError):
        await loop.scale(V2, now=1.0)
    assert api.names(DEPLOYMENTS) == []


def body(**spec: Any) -> kube.Object:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello", "namespace": "team"},
        "spec": {"source": {"image": "registry.example/fn@sha256:" + "a" * 64}, **spec},
    }


@pytest.mark.asyncio
async def test_each_routed_version_is_scaled_with_its_functions_settings_until_unrouted() -> None:
    weighted = {"name": "live", "version": 2, "additionalVersion": {"version": 3, "weight": 10}}
    scale = {"maxReplicas": 4}
    async with watching.function_specs() as (server, target):
        await asyncio.to_thread(server.send, [body(aliases=[weighted], scale=scale)])
        assert set(target.specs) == {HELLO, V2, HELLO._replace(version="3")}
        assert {spec.max_replicas for spec in target.specs.values()} == {4}
        # The alias moves to version 3 alone: version 2 is no longer scaled.
        await asyncio.to_thread(
            server.send, ("MODIFIED", body(aliases=[{"name": "live", "version": 3}], scale=scale))
        )
        assert set(target.specs) == {HELLO, HELLO._replace(version="3")}
        await asyncio.to_thread(server.send, ("DELETED", body()))
        assert target.specs == {}


def test_a_versions_stats_entry_names_its_version_and_survives_the_wire() -> None:
    message = stats.StatMessage(
        "act-1",
        1.0,
        (stats.FunctionStat(HELLO, 1.0, 1, 0, 3), stats.FunctionStat(V2, 2.0, 2, 1, 5)),
    )
    wire = stats.encode(message)
    assert b'{"ns":"team","n":"hello","v":"2","c":2.0' in wire
    assert b'{"ns":"team","n":"hello","c":1.0' in wire  # $LATEST's entry has no "v"
    assert stats.decode(wire) == message
