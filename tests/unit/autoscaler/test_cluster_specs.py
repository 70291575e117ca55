"""ScaleSpecs read from Functions."""

from __future__ import annotations

from typing import Any

from kfn.api import function
from kfn.autoscaler import cluster


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
