"""Where ready endpoints come from: the ``EndpointSource`` protocol.

In a cluster the source watches EndpointSlices and probes pods' ``/_kfn/ready``
itself, so a pod takes traffic the moment its runtime is ready, not when the
kubelet's next probe says so. Here: the protocol, and a static source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Protocol

from kfn import stats

#: Called with a function and the full set of its ready endpoints (``ip:port``).
Update = Callable[[stats.FunctionKey, frozenset[str]], None]


class EndpointSource(Protocol):
    async def run(self, update: Update) -> None:
        """Push the current endpoints, then every change, until cancelled."""


class StaticEndpointSource:
    """A fixed set of endpoints (from a config file or arguments)."""

    def __init__(self, endpoints: Mapping[stats.FunctionKey, frozenset[str]]) -> None:
        self.endpoints = dict(endpoints)

    async def run(self, update: Update) -> None:
        for function, addresses in self.endpoints.items():
            update(function, addresses)
        await asyncio.Event().wait()
