"""The trusted proxies that are pods: the Gateway's Envoy pods, watched by label.

``--trusted-proxy-pods NAMESPACE:LABEL_SELECTOR`` names the pods at the cluster's edge that
forward public requests to the activator; their IPs change as they are replaced, so a
:class:`kfn.kube.cache.Store` watches them (in that namespace only: the activator needs
``list`` and ``watch`` on pods there) and every change hands the current set of their IPs to
the activator, which trusts them beside ``--trusted-proxy-cidrs``
(:mod:`~kfn.activator.forwarding`). A pod that has ended (``Succeeded``, ``Failed``) is no
longer trusted: its IP may already be another pod's. One being deleted still is while it
drains its connections.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kfn import kube
from kfn.activator import forwarding
from kfn.kube import cache


def addresses(pod: Mapping[str, Any]) -> frozenset[forwarding.Address] | None:
    """The IPs of a pod still running (or starting), None for one that ended."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return None
    texts = [str(entry.get("ip") or "") for entry in status.get("podIPs") or []]
    texts.append(str(status.get("podIP") or ""))
    found = (forwarding.address(text) for text in texts if text)
    return frozenset(a for a in found if a is not None)


def _in(namespace: str) -> cache.Reflect:
    def reflect(
        api_version: str,
        kind: str,
        into: kube.Reflection,
        stop: threading.Event,
        *,
        label_selector: str = "",
    ) -> None:
        kube.reflect(
            api_version, kind, into, stop, label_selector=label_selector, namespace=namespace
        )

    return reflect


class TrustedPods:
    """Keeps the activator's trusted pod IPs in line with the pods a selector picks."""

    def __init__(
        self,
        selector: forwarding.PodSelector,
        update: Callable[[frozenset[forwarding.Address]], None],
        *,
        reflect: cache.Reflect | None = None,  # tests pass a fake source of events
    ) -> None:
        self.selector = selector
        self.update = update
        self.reflect = reflect if reflect is not None else _in(selector.namespace)
        #: Set after the first complete list was handed on.
        self.synced = asyncio.Event()

    async def run(self) -> None:
        pods: cache.Store[frozenset[forwarding.Address]] = cache.Store(
            "v1",
            "Pod",
            lambda pod, _: addresses(pod),
            label_selector=self.selector.label_selector,
            listener=cache.on_loop(asyncio.get_running_loop(), lambda _: self._push(pods)),
            reflect=self.reflect,
        )
        pods.start()
        try:
            await asyncio.Event().wait()
        finally:
            pods.stop()

    def _push(self, pods: cache.Store[frozenset[forwarding.Address]]) -> None:
        found: set[forwarding.Address] = set()
        for (namespace, _), ips in pods.snapshot().items():
            if namespace == self.selector.namespace:  # a fake source may list more
                found |= ips
        self.update(frozenset(found))
        self.synced.set()
