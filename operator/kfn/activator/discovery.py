"""Ready endpoints from the cluster: function pods, watched, and probed by the activator itself.

The kubelet probes ``/_kfn/ready`` once a second, so waiting for its verdict (or for the
EndpointSlice that follows it) adds up to a second to every cold start. Instead the
activator watches the function pods (label ``kfn.dev/function``, component ``function``
for a function's ``$LATEST``, ``function-version`` with ``kfn.dev/version: N`` for version N,
which runs in a Deployment of its own: each pod counts for its invocation target's
:class:`~kfn.stats.FunctionKey`) and, as soon as a new pod has an IP, probes
``GET http://<podIP>:8080/_kfn/ready`` itself every 20 ms until the runtime answers 200.
From then on the kubelet's Ready condition is the judge.

A runtime whose handler failed to load says so on that probe (:mod:`~kfn.activator.pod_probe`)
and answers every invocation at once with its init error, while the kubelet keeps it unready.
Such a pod is routed to only while its function has no pod that loaded its handler: callers
then get Lambda's error at once instead of waiting for their timeout, and a rollout of a broken
version takes no traffic from the working pods.

A pod leaves the ready set at once when it is terminating (``deletionTimestamp`` set —
the activator stops routing to it while the runtime drains, before it stops), when it
has ended, or when the kubelet reports it not ready after having reported it ready (a
draining or stuck runtime). Watching pods rather than EndpointSlices gives exactly
these facts, and earlier: an EndpointSlice only changes after the kubelet's probe.

The source also notes, for cold starts' phases (:mod:`~kfn.activator.cold_start`), when it
saw each pod first (created), first with ``spec.nodeName`` (bound) and its first successful
probe (with the runtime's ``Kfn-Init-Timing``): wall-clock instants of this process, as
precise as the watch's delivery (milliseconds).

:class:`PodTracker` decides (pure, no I/O); :class:`KubeEndpointSource` watches,
probes and pushes updates through the :class:`~kfn.activator.endpoints.EndpointSource`
protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kfn import kube, stats
from kfn.activator import cold_start, endpoints, exits, pod_probe
from kfn.kube import cache
from kfn.resources import pools as pool_rules

logger = logging.getLogger(__name__)

LABEL_FUNCTION = "kfn.dev/function"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_VERSION = "kfn.dev/version"
COMPONENT_FUNCTION = "function"
COMPONENT_VERSION = "function-version"
#: A warm pool's pod; a function's once it was specialised for it (kfn.activator.pools).
COMPONENT_POOL = pool_rules.COMPONENT_POOL
LABEL_POOL_STATE = pool_rules.LABEL_POOL_STATE
POOL_SPECIALISED = pool_rules.STATE_SPECIALISED
#: Selects every function pod in every namespace: ``$LATEST``'s, every version's, and the
#: pool pods specialised for a function.
POD_SELECTOR = (
    f"{LABEL_FUNCTION},"
    f"{LABEL_COMPONENT} in ({COMPONENT_FUNCTION},{COMPONENT_VERSION},{COMPONENT_POOL})"
)
#: The runtime contract's port and readiness path.
POD_PORT = pod_probe.POD_PORT
READY_PATH = pod_probe.READY_PATH


@dataclasses.dataclass(frozen=True, slots=True)
class PodView:
    """What the activator needs of one pod."""

    uid: str
    function: stats.FunctionKey
    ip: str
    #: Terminating (deletionTimestamp set) or ended (Succeeded/Failed).
    gone: bool
    #: The kubelet's Ready condition: True, False, or None when not reported yet.
    kubelet_ready: bool | None
    #: The node the pod is bound to ("" before it is scheduled).
    node: str = ""
    #: How many times the function container ended, and its latest end (kfn.activator.exits).
    ends: int = 0
    last_exit: exits.Exit | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{POD_PORT}"


def view(pod: Mapping[str, Any]) -> PodView | None:
    """The facts of a pod object, or None for something that is not a function pod."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = labels.get(LABEL_FUNCTION)
    uid = meta.get("uid")
    if not name or not uid:
        return None
    version = stats.LATEST_VERSION
    component = labels.get(LABEL_COMPONENT)
    if component == COMPONENT_POOL and labels.get(LABEL_POOL_STATE) != POOL_SPECIALISED:
        return None  # not (yet) any function's
    if component == COMPONENT_VERSION:
        version = str(labels.get(LABEL_VERSION) or "")
        if not version.isdigit():
            return None  # a version's pod without its number: no target to count it for
    status = pod.get("status") or {}
    ready: bool | None = None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
    ends, last_exit = exits.of_pod(status)
    return PodView(
        uid=str(uid),
        function=stats.FunctionKey(str(meta.get("namespace", "")), str(name), version),
        ip=str(status.get("podIP") or ""),
        gone=bool(meta.get("deletionTimestamp")) or status.get("phase") in ("Succeeded", "Failed"),
        kubelet_ready=ready,
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        ends=ends,
        last_exit=last_exit,
    )


@dataclasses.dataclass(slots=True)
class _Pod:
    view: PodView
    probed: bool = False
    kubelet_was_ready: bool = False
    #: The activator's probe found that the handler failed to load.
    init_error: bool = False


class PodTracker:
    """The ready set of every function, from pod facts and the activator's own probes."""

    def __init__(self) -> None:
        self._pods: dict[str, _Pod] = {}

    def observe(self, v: PodView) -> stats.FunctionKey:
        """A pod was added or changed."""
        pod = self._pods.get(v.uid)
        if pod is None:
            pod = self._pods[v.uid] = _Pod(v)
        pod.view = v
        if v.kubelet_ready:
            pod.kubelet_was_ready = True
        elif v.kubelet_ready is False and pod.kubelet_was_ready:
            # Ready before, not now: draining or stuck. Our old probe result no longer counts.
            pod.probed = False
        return v.function

    def forget(self, uid: str) -> stats.FunctionKey | None:
        """A pod was deleted."""
        pod = self._pods.pop(uid, None)
        return pod.view.function if pod else None

    def probed(self, uid: str, *, init_error: bool = False) -> stats.FunctionKey | None:
        """The activator's probe of a pod answered 200, or with an init error."""
        pod = self._pods.get(uid)
        if pod is None:
            return None
        pod.probed = True
        pod.init_error = init_error
        return pod.view.function

    def needs_probe(self, uid: str) -> bool:
        """Whether the activator should probe the pod: alive, with an IP, not known ready."""
        pod = self._pods.get(uid)
        if pod is None:
            return False
        v = pod.view
        return bool(v.ip) and not v.gone and not pod.probed and not pod.kubelet_was_ready

    def view(self, uid: str) -> PodView | None:
        pod = self._pods.get(uid)
        return pod.view if pod else None

    def pods(self) -> list[PodView]:
        return [pod.view for pod in self._pods.values()]

    def ready(self, function: stats.FunctionKey) -> frozenset[str]:
        """The addresses the function's requests may go to now: the pods that loaded the
        handler, or, when there is none, those that answer with their init error."""
        usable = [p for p in self._pods.values() if p.view.function == function and _is_ready(p)]
        loaded = frozenset(p.view.address for p in usable if not p.init_error)
        return loaded or frozenset(p.view.address for p in usable)


def _is_ready(pod: _Pod) -> bool:
    v = pod.view
    if not v.ip or v.gone:
        return False
    if v.kubelet_ready:
        return True
    return pod.probed and not pod.kubelet_was_ready


def _key(pod: kube.Object) -> cache.Key:
    """Where the store keeps a pod: by namespace and uid, which a pod of the same name
    created again does not share."""
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("uid", ""))


class KubeEndpointSource:
    """An :class:`~kfn.activator.endpoints.EndpointSource` over the cluster's function pods."""

    def __init__(
        self,
        *,
        probe_interval: float = 0.02,
        probe_limit: float = 300.0,
        probe: Callable[[str], Awaitable[pod_probe.Probed]] = pod_probe.probe,
        reflect: cache.Reflect = kube.reflect,  # tests pass a fake source of events
        pods: cold_start.PodInstants | None = None,
    ) -> None:
        self.probe_interval = probe_interval
        self.probe_limit = probe_limit
        self.probe = probe
        self.reflect = reflect
        self.tracker = PodTracker()
        #: Why function processes died, for the exchanges whose connection they ended.
        self.exits = exits.Exits()
        #: Each pod's instants, by address (read for cold starts), and by uid (kept here).
        self.instants = pods if pods is not None else cold_start.PodInstants()
        self._instants: dict[str, cold_start.Pod] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._sent: dict[stats.FunctionKey, frozenset[str]] = {}
        #: Where updates go (set by :meth:`run`).
        self.update: endpoints.Update | None = None
        #: Set after the first complete list of pods was pushed.
        self.synced = asyncio.Event()

    async def run(self, update: endpoints.Update) -> None:
        self.update = update
        pods = cache.Store(
            "v1",
            "Pod",
            lambda pod, _: view(pod),
            key=_key,
            label_selector=POD_SELECTOR,
            listener=cache.on_loop(asyncio.get_running_loop(), self.apply),
            reflect=self.reflect,
        )
        pods.start()
        try:
            await asyncio.Event().wait()
        finally:
            pods.stop()
            for task in self._probes.values():
                task.cancel()

    # --- called on the event loop -------------------------------------------------------

    def adopt(self, pod: Mapping[str, Any], function: stats.FunctionKey, began: float) -> None:
        """A pool pod the activator just specialised for ``function`` (kfn.activator.pools):
        an endpoint at once, ready by the runtime's own answer, before its labels reach the
        watch. ``began`` is when its specialisation began, its cold start's only phase."""
        v = view(pod)
        if v is None or v.function != function:
            return
        self.tracker.observe(v)
        self._instants[v.uid] = seen = cold_start.Pod(created=began, bound=began)
        seen.probed = time.time()
        self.instants.pods[v.address] = seen
        self.tracker.probed(v.uid)
        self._push({function})

    def drop(self, uid: str) -> None:
        """An adopted pod that never reached the watch (it was deleted): no endpoint now."""
        gone = self.tracker.view(uid)
        if gone is None:
            return
        self._instants.pop(uid, None)
        self.instants.forget(gone.address)
        function = self.tracker.forget(uid)
        if function is not None:
            self._push({function})

    def apply(self, changes: list[cache.Change[PodView]]) -> None:
        """Takes in what a list or a watch event changed (a re-list reports the pods it no
        longer has as gone), pushes the functions it touched, and counts as synced: the
        store lists before it watches, so the first call is the first complete list."""
        touched: set[stats.FunctionKey] = set()
        now = time.time()
        for change in changes:
            if change.value is None:
                _, uid = change.key
                gone = self.tracker.view(uid)
                self._instants.pop(uid, None)
                if gone is not None and gone.ip:
                    self.exits.forget(gone.address)
                    self.instants.forget(gone.address)
                function = self.tracker.forget(uid)
                if function is not None:
                    touched.add(function)
            else:
                pod = change.value
                seen = self._instants.get(pod.uid)
                if seen is None:
                    seen = self._instants[pod.uid] = cold_start.Pod(created=now)
                if pod.node and seen.bound is None:
                    seen.bound = now
                if pod.ip:
                    self.instants.pods[pod.address] = seen
                    self.exits.observe(pod.address, pod.ends, pod.last_exit)
                touched.add(self.tracker.observe(pod))
        self._push(touched)
        self.synced.set()

    def _push(self, functions: set[stats.FunctionKey]) -> None:
        for pod in self.tracker.pods():
            if self.tracker.needs_probe(pod.uid) and pod.uid not in self._probes:
                task = asyncio.get_running_loop().create_task(self._probe(pod.uid, pod.ip))
                self._probes[pod.uid] = task
        for uid in [uid for uid in self._probes if not self.tracker.needs_probe(uid)]:
            self._probes.pop(uid).cancel()
        for function in functions:
            ready = self.tracker.ready(function)
            if self._sent.get(function) != ready:
                self._sent[function] = ready
                if self.update is not None:
                    self.update(function, ready)

    async def _probe(self, uid: str, ip: str) -> None:
        deadline = time.monotonic() + self.probe_limit
        try:
            while time.monotonic() < deadline:
                probed = await self.probe(ip)
                answer = probed.answer
                if answer is not pod_probe.Answer.NOT_READY:
                    seen = self._instants.get(uid)
                    if seen is not None and seen.probed is None:
                        seen.probed = time.time()
                        seen.init = probed.init
                    self._probes.pop(uid, None)
                    init_error = answer is pod_probe.Answer.INIT_ERROR
                    function = self.tracker.probed(uid, init_error=init_error)
                    if function is not None:
                        self._push({function})
                    return
                await asyncio.sleep(self.probe_interval)
            logger.info(
                "pod %s at %s not ready after %.0fs; leaving it to the kubelet",
                uid,
                ip,
                self.probe_limit,
            )
        finally:
            with contextlib.suppress(KeyError):
                if self._probes.get(uid) is asyncio.current_task():
                    del self._probes[uid]
