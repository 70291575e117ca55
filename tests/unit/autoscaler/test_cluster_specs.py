"""ScaleSpecs read from Functions, and kept in line with them as they change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kfn import kube, stats
from kfn.api import function
from kfn.autoscaler import cluster
from tests.unit.autoscaler import watching


def fn(**spec: Any) -> function.Function:
    return function.Function.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "a", "namespace": "team"},
            "spec": {"source": {"image": "registry.example/fn@sha256:" + "a" * 64}, **spec},
        }
    )


def test_the_scale_spec_follows_the_functions_bounds_and_idle_timeout() -> None:
    spec = cluster.spec_of(
        fn(scale={"minReplicas": 1, "maxReplicas": 7, "idleTimeout": "5m"}), stable_window=30
    )
    assert (spec.min_replicas, spec.max_replicas, spec.idle_timeout) == (1, 7, 300.0)
    assert spec.stable_window == 30


def test_the_target_defaults_to_the_concurrency_and_never_exceeds_it() -> None:
    assert cluster.spec_of(fn(concurrency=8)).target_concurrency == 8
    assert (
        cluster.spec_of(fn(concurrency=8, scale={"targetConcurrency": 3})).target_concurrency == 3
    )


def body(name: str, **spec: Any) -> kube.Object:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"source": {"image": "registry.example/fn@sha256:" + "a" * 64}, **spec},
    }


@pytest.mark.asyncio
async def test_functions_listed_changed_and_gone_set_and_remove_their_scale_specs() -> None:
    a, b, c = (stats.FunctionKey("team", name) for name in "abc")
    invalid = body("c", concurrency=0)
    deleting = body("b")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T10:00:00Z"
    async with watching.function_specs(stable_window=30) as (server, target):
        # Each send returns after the store's listener was scheduled on this loop, which runs
        # it before it resumes this test.
        await asyncio.to_thread(
            server.send, [body("a"), body("b", scale={"maxReplicas": 3}), invalid]
        )
        assert set(target.specs) == {a, b}
        assert (target.specs[b].max_replicas, target.specs[b].stable_window) == (3, 30)
        await asyncio.to_thread(server.send, ("MODIFIED", body("c")))
        await asyncio.to_thread(server.send, ("MODIFIED", deleting))
        assert set(target.specs) == {a, c}
        await asyncio.to_thread(server.send, ("MODIFIED", body("c", concurrency=0)))
        await asyncio.to_thread(server.send, [body("b")])  # relisted: a was deleted meanwhile
        assert set(target.specs) == {b}
