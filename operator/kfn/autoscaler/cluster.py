"""The autoscaler's Kubernetes side: ScaleSpecs from Functions, replicas through ``scale``.

* :func:`spec_of` reads a Function's ``spec.scale`` (pure).
* :class:`KubeScaler` is the :class:`~kfn.autoscaler.scaler.Scaler` of a cluster: it
  reads and writes the ``scale`` subresource of the target's Deployment (in the function's
  namespace, :func:`deployment_name`: the function's name for ``$LATEST``,
  ``<function>-v<N>`` for version N) under its own field manager
  (:data:`kfn.kube.SCALE_MANAGER`). The operator sets ``replicas`` only when it
  creates a Deployment, so the two never write the same field twice.
* :class:`FunctionSpecs` watches Functions (a :class:`kfn.kube.cache.Store`) and keeps
  the autoscaler's specs current: one for each Function's ``$LATEST`` and one for each
  version something routes to (an alias, a rollout), which scales with its Function's
  ``spec.scale`` (a version records no scale settings of its own). The same changes go on to
  the rollouts (:class:`kfn.autoscaler.rollouts.Rollouts`), so Functions are watched once.

The blocking client calls run in worker threads so the stats endpoint keeps
answering while a PATCH is on its way.
"""

from __future__ import annotations

import asyncio
import logging

import pydantic

from kfn import kube, stats
from kfn.api import function as function_api
from kfn.api import function_version, meta
from kfn.autoscaler import autoscaler as autoscalers
from kfn.autoscaler import scaling
from kfn.kube import cache
from kfn.resources import versions as version_rules

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
        activation_scale=min(scale.activation_scale, scale.max_replicas),
        **windows,
    )


def deployment_name(function: stats.FunctionKey) -> str:
    """The Deployment running an invocation target: the function's own for ``$LATEST``,
    ``<function>-v<N>`` for version N."""
    if not function.version:
        return function.name
    return function_version.object_name(function.name, int(function.version))


class KubeScaler:
    """Replicas of a target's Deployment through its ``scale`` subresource."""

    async def get_scale(self, function: stats.FunctionKey) -> int:
        name = deployment_name(function)
        replicas = await asyncio.to_thread(kube.get_scale, function.namespace, name)
        if replicas is None:
            raise WorkloadMissingError(str(function))
        return replicas

    async def set_scale(self, function: stats.FunctionKey, replicas: int) -> None:
        name = deployment_name(function)
        await asyncio.to_thread(kube.set_scale, function.namespace, name, replicas)


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
        also: cache.Listener[function_api.Function] | None = None,
        **windows: float,
    ) -> None:
        self.target = target
        self.reflect = reflect
        #: Hears the same changes after them (the rollouts, :mod:`kfn.autoscaler.rollouts`).
        self.also = also
        self.windows = windows
        #: The targets scaled for each Function: its ``$LATEST`` and its routed versions.
        self._targets: dict[stats.FunctionKey, set[stats.FunctionKey]] = {}

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
        """Sets the spec of each Function that came or changed (and of its routed versions),
        removes those gone (and versions nothing routes to any more), and passes on how many
        pods are ready for each (its status, which the operator keeps)."""
        for change in changes:
            key = stats.FunctionKey(*change.key)
            if change.value is None:
                for gone in self._targets.pop(key, {key}):
                    self.target.remove(gone)
                continue
            spec = spec_of(change.value, **self.windows)
            wanted = {key} | {
                key._replace(version=str(n)) for n in version_rules.routed(change.value)
            }
            for gone in self._targets.get(key, set()) - wanted:
                self.target.remove(gone)
            self._targets[key] = wanted
            for each in sorted(wanted):
                if self.target.specs.get(each) != spec:
                    logger.info("scaling %s with %s", each, spec)
                    self.target.set_spec(each, spec)
            status = change.value.status
            self.target.observe_ready(key, (status.ready_replicas if status else None) or 0)
        if self.also is not None:
            self.also(changes)
