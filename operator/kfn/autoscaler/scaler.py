"""Acting on decisions: the ``Scaler`` protocol.

The Kubernetes implementation (the Deployment ``scale`` subresource) lives with the
other Kubernetes-facing code; the autoscaler only needs these two calls.
"""

from __future__ import annotations

from typing import Protocol

from kfn import stats


class Scaler(Protocol):
    """Reads and writes the replica count of a function's workload."""

    async def get_scale(self, function: stats.FunctionKey) -> int: ...

    async def set_scale(self, function: stats.FunctionKey, replicas: int) -> None: ...


class InMemoryScaler:
    """A Scaler over a dict: stands in for Kubernetes in tests and local runs."""

    def __init__(self, replicas: dict[stats.FunctionKey, int] | None = None) -> None:
        self.replicas: dict[stats.FunctionKey, int] = dict(replicas or {})
        self.history: list[tuple[stats.FunctionKey, int]] = []

    async def get_scale(self, function: stats.FunctionKey) -> int:
        return self.replicas.get(function, 0)

    async def set_scale(self, function: stats.FunctionKey, replicas: int) -> None:
        self.replicas[function] = replicas
        self.history.append((function, replicas))
