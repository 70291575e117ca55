"""The autoscaler's Kubernetes side: ScaleSpecs from Functions, replicas through ``scale``.

* :func:`spec_of` reads a Function's ``spec.scale`` (pure).
* :class:`KubeScaler` is the :class:`~kfn.autoscaler.scaler.Scaler` of a cluster: it
  reads and writes the ``scale`` subresource of the function's Deployment (named
  after the function, in its namespace) under its own field manager
  (:data:`kfn.kube.SCALE_MANAGER`). The operator sets ``replicas`` only when it
  creates a Deployment, so the two never write the same field twice.
* :class:`FunctionSpecs` watches Functions (a :class:`kfn.kube.cache.Store`) and keeps
  the autoscaler's specs current.

The blocking client calls run in worker threads so the stats endpoint keeps
answering while a PATCH is on its way.
"""

from __future__ import annotations

import asyncio
import logging

import pydantic

from kfn import kube, stats
from kfn.api import function as function_api
from kfn.api import meta
from kfn.autoscaler import autoscaler as autoscalers
from kfn.autoscaler import scaling
from kfn.kube import cache

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


def function_of(
    obj: kube.Object, previous: function_api.Function | None
) -> function_api.Function | None:
    """The Function to scale; None for one being deleted or with a spec the models refuse
    (the operator reports that on the Function; there is nothing to scale)."""
    del previous
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None
    try:
        return function_api.Function.model_validate(obj)
    except pydantic.ValidationError:
        return None


class FunctionSpecs:
    """Keeps :meth:`Autoscaler.set_spec` / :meth:`Autoscaler.remove` in line with Functions."""

    def __init__(
        self,
        target: autoscalers.Autoscaler,
        *,
        reflect: cache.Reflect = kube.reflect,  # tests pass a fake source of events
        **windows: float,
    ) -> None:
        self.target = target
        self.reflect = reflect
        self.windows = windows

    async def run(self) -> None:
        functions = cache.Store(
            API_VERSION,
            function_api.KIND,
            function_of,
            listener=cache.on_loop(asyncio.get_running_loop(), self.apply),
            reflect=self.reflect,
        )
        functions.start()
        try:
            await asyncio.Event().wait()
        finally:
            functions.stop()

    def apply(self, changes: list[cache.Change[function_api.Function]]) -> None:
        """Sets the spec of each Function that came or changed, removes those gone, and
        passes on how many pods are ready for each (its status, which the operator keeps)."""
        for change in changes:
            key = stats.FunctionKey(*change.key)
            if change.value is None:
                self.target.remove(key)
                continue
            spec = spec_of(change.value, **self.windows)
            if self.target.specs.get(key) != spec:
                logger.info("scaling %s with %s", key, spec)
                self.target.set_spec(key, spec)
            status = change.value.status
            self.target.observe_ready(key, (status.ready_replicas if status else None) or 0)
