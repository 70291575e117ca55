"""The autoscaler's Kubernetes side: ScaleSpecs from Functions, replicas through ``scale``.

* :func:`spec_of` reads a Function's ``spec.scale`` (pure).
* :class:`KubeScaler` is the :class:`~kfn.autoscaler.scaler.Scaler` of a cluster: it
  reads and writes the ``scale`` subresource of the function's Deployment (named
  after the function, in its namespace) under its own field manager
  (:data:`kfn.kube.SCALE_MANAGER`). The operator sets ``replicas`` only when it
  creates a Deployment, so the two never write the same field twice.
* :class:`FunctionSpecs` watches Functions (in a thread, see
  :func:`kfn.kube.reflect`) and keeps the autoscaler's specs current.

The blocking client calls run in worker threads so the stats endpoint keeps
answering while a PATCH is on its way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any

import pydantic

from kfn import kube, stats
from kfn.api import function as function_api
from kfn.api import meta
from kfn.autoscaler import autoscaler as autoscalers
from kfn.autoscaler import scaling

logger = logging.getLogger(__name__)

API_VERSION = f"{meta.GROUP}/{meta.VERSION}"


class WorkloadMissingError(LookupError):
    """The function has no Deployment (yet): nothing to scale."""


def spec_of(fn: function_api.Function, **windows: float) -> scaling.ScaleSpec:
    """The ScaleSpec of a Function; ``windows`` override the KPA's window settings."""
    scale = fn.spec.scale
    target = min(scale.target_concurrency or fn.spec.concurrency, fn.spec.concurrency)
    return scaling.ScaleSpec(
        target_concurrency=float(target),
        min_replicas=scale.min_replicas,
        max_replicas=scale.max_replicas,
        idle_timeout=meta.parse_duration(scale.idle_timeout).total_seconds(),
        **windows,
    )


class KubeScaler:
    """Replicas of a function's Deployment through its ``scale`` subresource."""

    async def get_scale(self, function: stats.FunctionKey) -> int:
        replicas = await asyncio.to_thread(kube.get_scale, function.namespace, function.name)
        if replicas is None:
            raise WorkloadMissingError(str(function))
        return replicas

    async def set_scale(self, function: stats.FunctionKey, replicas: int) -> None:
        await asyncio.to_thread(kube.set_scale, function.namespace, function.name, replicas)


def _key(body: Mapping[str, Any]) -> stats.FunctionKey:
    meta_ = body.get("metadata") or {}
    return stats.FunctionKey(str(meta_.get("namespace", "")), str(meta_.get("name", "")))


class FunctionSpecs:
    """Keeps :meth:`Autoscaler.set_spec` / :meth:`Autoscaler.remove` in line with Functions."""

    def __init__(self, target: autoscalers.Autoscaler, **windows: float) -> None:
        self.target = target
        self.windows = windows

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        source = self

        class Into:
            def replace(self, objects: list[kube.Object]) -> None:
                loop.call_soon_threadsafe(source.replace, objects)

            def change(self, kind: str, obj: kube.Object) -> None:
                loop.call_soon_threadsafe(source.change, kind, obj)

        stop = threading.Event()
        thread = threading.Thread(
            target=kube.reflect,
            args=(API_VERSION, "Function", Into(), stop),
            name="function-watch",
            daemon=True,
        )
        thread.start()
        try:
            await asyncio.Event().wait()
        finally:
            stop.set()

    def replace(self, objects: list[kube.Object]) -> None:
        keys = set()
        for obj in objects:
            keys.add(_key(obj))
            self.change("ADDED", obj)
        for key in [k for k in self.target.specs if k not in keys]:
            self.target.remove(key)

    def change(self, kind: str, obj: kube.Object) -> None:
        key = _key(obj)
        if kind == "DELETED" or (obj.get("metadata") or {}).get("deletionTimestamp"):
            self.target.remove(key)
            return
        try:
            fn = function_api.Function.model_validate(obj)
        except pydantic.ValidationError:
            # The operator reports an unusable spec on the Function; nothing to scale.
            self.target.remove(key)
            return
        spec = spec_of(fn, **self.windows)
        if self.target.specs.get(key) != spec:
            logger.info("scaling %s with %s", key, spec)
            self.target.set_spec(key, spec)
