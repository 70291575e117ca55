"""Warm pools, the activator's side: a function at zero served by a pool pod it specialises.

When the first request of a function at zero queues (the throttler pokes the autoscaler), the
activator also looks for an idle, ready pod of the function's pool (the operator keeps one
ReplicaSet per pool key in each namespace that opted in: docs/design/warm-pools.md) and sends
it ``POST /_kfn/specialise``: the handler, the environment the kubelet would have given the
function's container (:mod:`~kfn.activator.specialise`, with the values of the Secrets and
ConfigMaps it names read through the API) and the function image's own layers, pulled from
the registry once with the namespace's credential and kept here by digest (the pod checks
each blob's digest again). A runtime takes one specialisation in its life, so its answer is
the lock between activators: 409 means another one took the pod, and the next is tried.

On success the pod becomes an endpoint of the function here at once (the queued request goes
to it); then, off the request's path, it is labelled for its function and given the Function
as its owner, which takes it out of its ReplicaSet (refilled) and into every activator's
endpoints. A pod that failed is deleted: it never returns to a pool. Anything missing (no idle
pod, an image built on another base, a missing Secret) leaves the request to the function's
own pod, which the autoscaler starts as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kfn import kube, oci, ociauth, stats
from kfn.activator import pod_probe, specialise
from kfn.api import function as function_api
from kfn.kube import cache
from kfn.resources import deployment, objects
from kfn.resources import pools as pool_rules

logger = logging.getLogger(__name__)

LABEL_COMPONENT = objects.LABEL_COMPONENT
LABEL_FUNCTION = objects.LABEL_FUNCTION
LABEL_POOL = pool_rules.LABEL_POOL
LABEL_STATE = pool_rules.LABEL_POOL_STATE
COMPONENT_POOL = pool_rules.COMPONENT_POOL
IDLE = pool_rules.STATE_IDLE
SPECIALISED = pool_rules.STATE_SPECIALISED
#: The idle pods of every pool in every namespace.
IDLE_SELECTOR = f"{LABEL_COMPONENT}={COMPONENT_POOL},{LABEL_STATE}={IDLE}"
SPECIALISE_PATH = "/_kfn/specialise"
#: Pods tried for one cold start before leaving it to the function's own pod: a pool's most.
ATTEMPTS = pool_rules.MAX_POOL_SIZE
#: The longest a specialised pod's labelling and its function's scale-up wait for the other
#: specialisations under way (see Specialiser.start), and how long none must have begun or
#: ended here before they go (another activator's burst is seen only as quiet here).
QUIET_LIMIT = 2.0
QUIET_FOR = 0.3
#: A pod's answer head and body are short; longer is not a runtime.
ANSWER_LIMIT = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class IdlePod:
    """An idle pool pod as the activator needs it."""

    namespace: str
    name: str
    uid: str
    pool: str
    ip: str
    image: str
    ready: bool


def idle_view(pod: Mapping[str, Any], _: IdlePod | None = None) -> IdlePod | None:
    """The facts of an idle pool pod, or None for anything else."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(LABEL_COMPONENT) != COMPONENT_POOL or labels.get(LABEL_STATE) != IDLE:
        return None
    status = pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return IdlePod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        pool=str(labels.get(LABEL_POOL, "")),
        ip=str(status.get("podIP") or ""),
        image=str(containers[0].get("image", "")) if containers else "",
        ready=ready and not meta.get("deletionTimestamp"),
    )


class BlobCache:
    """Blobs by digest, the least recently used dropped past ``limit`` bytes in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._blobs: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._bytes = 0

    def get(self, digest: str) -> bytes | None:
        blob = self._blobs.get(digest)
        if blob is not None:
            self._blobs.move_to_end(digest)
        return blob

    def put(self, digest: str, blob: bytes) -> None:
        if digest in self._blobs or len(blob) > self.limit:
            return
        self._blobs[digest] = blob
        self._bytes += len(blob)
        while self._bytes > self.limit:
            _, dropped = self._blobs.popitem(last=False)
            self._bytes -= len(dropped)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What a function image adds above a pool's base: its layers and its config's Env."""

    repository: str
    layers: tuple[specialise.Layer, ...]
    image_env: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Eligible:
    """A function its pool can serve now: it, its image and the pool's idle pods."""

    fn: function_api.Function
    image: str
    candidates: list[IdlePod]


@dataclasses.dataclass(frozen=True, slots=True)
class Offer:
    """A specialisation ready to send: the function, the idle pods to try, the body."""

    fn: function_api.Function
    pods: list[IdlePod]
    head: bytes
    blobs: list[bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class Registry:
    """Where function images are: the chart's registry settings."""

    host: str
    plain_http: bool = False
    ca_file: str | None = None
    #: The dockerconfigjson Secret of each namespace holding its credential.
    secret_name: str = "kfn-registry"  # noqa: S105 - the name of a Secret, no password


class Specialiser:
    """Turns idle pool pods into pods of functions at zero (see the module doc)."""

    def __init__(
        self,
        *,
        function_of: Callable[[str, str], function_api.Function | None],
        pool_of: Callable[[function_api.Function], str | None],
        adopt: Callable[[Mapping[str, Any], stats.FunctionKey, float], None],
        drop: Callable[[str], None],
        registry: Registry,
        cache_bytes: int = 256 << 20,
        reflect: cache.Reflect = kube.reflect,
        port: int = pod_probe.POD_PORT,
    ) -> None:
        self.function_of = function_of
        self.pool_of = pool_of
        self.adopt = adopt
        self.drop = drop
        self.registry = registry
        self.blobs = BlobCache(cache_bytes)
        self.reflect = reflect
        #: The pods' port (tests run pool runtimes on another).
        self.port = port
        self._plans: dict[tuple[str, str], Plan] = {}
        self._running: dict[stats.FunctionKey, asyncio.Task[str]] = {}
        #: Specialisations under way, the pods they are offered to, and what waits for them.
        self._busy = 0
        self._offering: set[str] = set()
        self._after: list[Callable[[], None]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_by = 0.0
        self._background: set[asyncio.Task[None]] = set()
        self._store: cache.Store[IdlePod] | None = None
        #: How each attempt ended, by outcome (``specialised``, ``no_idle_pod``, ...).
        self.outcomes: collections.Counter[str] = collections.Counter()

    async def run(self) -> None:
        self._store = cache.Store(
            "v1", "Pod", idle_view, label_selector=IDLE_SELECTOR, reflect=self.reflect
        )
        self._store.start()
        try:
            await asyncio.Event().wait()
        finally:
            self._store.stop()
            for task in [*self._running.values(), *self._background]:
                task.cancel()

    def start(self, function: stats.FunctionKey, then: Callable[[], None]) -> bool:
        """The function has a request queued and no pod: specialise an idle pod of its pool
        for it, and call ``then`` when that ended, however it did. False (``then`` is not
        called) when its pool has no idle pod, it cannot use one, or one is being specialised
        for it already. Only ``$LATEST`` is served from pools.

        The caller pokes the autoscaler in ``then``: a pod of the function's own Deployment
        starting on a 2-core node takes the CPU the specialisation needs, and the function
        has its answer by then."""
        if function.version != stats.LATEST_VERSION or function in self._running:
            return False
        found = self._eligible(function)
        if isinstance(found, str):
            if found == "no_idle_pod":
                # The pool is too small for the cold starts it sees: counted for its admin.
                self.outcomes[found] += 1
            return False
        task = asyncio.get_running_loop().create_task(self._specialise(function, found))
        self._running[function] = task

        def done(ended: asyncio.Task[str]) -> None:
            self._running.pop(function, None)
            if not ended.cancelled() and ended.result() == "specialised":
                self._when_quiet(then)
            else:
                then()  # its request still waits: the Deployment's pod, at once

        task.add_done_callback(done)
        return True

    def _when_quiet(self, action: Callable[[], None]) -> None:
        """Runs ``action`` once no specialisation is under way here, or after QUIET_LIMIT.

        What follows a specialisation (the pod's labels, which refill its pool; the poke that
        starts the function's own pod) starts pods, and starting pods takes the node's CPU
        from the other specialisations of a burst: it waits for the burst to end."""
        loop = asyncio.get_running_loop()
        if not self._after:
            self._flush_by = loop.time() + QUIET_LIMIT
        self._after.append(action)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Flushes QUIET_FOR after the last specialisation here began or ended, and never
        later than QUIET_LIMIT after the first action waited."""
        if not self._after:
            return
        loop = asyncio.get_running_loop()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        at = min(self._flush_by, loop.time() + QUIET_FOR)
        self._flush_timer = loop.call_at(at, self._flush)

    def _flush(self) -> None:
        if self._busy and asyncio.get_running_loop().time() < self._flush_by:
            self._schedule_flush()
            return
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        actions, self._after = self._after, []
        for action in actions:
            action()

    def _eligible(self, function: stats.FunctionKey) -> Eligible | str:
        """The function, its image and its pool's idle pods; or why its pool cannot serve it
        now."""
        fn = self.function_of(function.namespace, function.name)
        if fn is None or not fn.status or not fn.status.image:
            return "not_deployed"
        pool = self.pool_of(fn)
        if pool is None:
            return "not_poolable"
        candidates = self.idle(function.namespace, pool)
        if not candidates:
            return "no_idle_pod"
        return Eligible(fn, fn.status.image, candidates)

    def idle(self, namespace: str, pool: str) -> list[IdlePod]:
        if self._store is None:
            return []
        return [
            pod
            for pod in self._store.values()
            if pod.namespace == namespace and pod.pool == pool and pod.ready and pod.ip
        ]

    async def _specialise(self, function: stats.FunctionKey, found: Eligible) -> str:
        began = time.time()
        self._busy += 1
        self._schedule_flush()
        try:
            outcome = await self._attempt(function, found, began)
        except Exception:  # a pool is an optimisation: never fail the request over it
            logger.exception("specialising a pool pod for %s failed", function)
            outcome = "error"
        finally:
            self._busy -= 1
        self._schedule_flush()
        self.outcomes[outcome] += 1
        logger.info(
            "warm pool for %s: %s in %.1f ms", function, outcome, (time.time() - began) * 1e3
        )
        return outcome

    async def _attempt(self, function: stats.FunctionKey, found: Eligible, began: float) -> str:
        prepared = await self._prepare(function, found)
        if isinstance(prepared, str):
            return prepared
        return await self._offer(function, prepared, began)

    async def _prepare(self, function: stats.FunctionKey, found: Eligible) -> Offer | str:
        """What to send, and to which of the pool's idle pods (found by :meth:`_eligible`);
        or why the pool cannot serve the function."""
        fn, image = found.fn, found.image
        candidates = offer_order(found.candidates, function)
        base = candidates[0].image
        container = _container(fn, image)
        secrets, config_maps = specialise.referenced(container)
        sources, plan = await asyncio.gather(
            _read_sources(function.namespace, secrets, config_maps),
            self._plan(function.namespace, image, base),
        )
        if plan is None:
            return "other_base"
        try:
            env = specialise.environment(plan.image_env, container, sources)
        except specialise.UnresolvableError as exc:
            logger.info("%s cannot be served from a pool: %s", function, exc)
            return "unresolvable"
        return Offer(
            fn=fn,
            pods=[pod for pod in candidates if pod.image == base][:ATTEMPTS],
            head=specialise.head(fn.spec.handler or "", env, plan.layers),
            blobs=[self.blobs.get(layer.digest) or b"" for layer in plan.layers],
        )

    async def _offer(self, function: stats.FunctionKey, offer: Offer, began: float) -> str:
        """Sends the specialisation to the pods in turn until one takes it."""
        limit = deployment.init_timeout_ms(offer.fn) / 1000 + 5
        for pod in offer.pods:
            if pod.uid in self._offering:
                continue  # this activator offers it to another function now
            self._offering.add(pod.uid)
            try:
                status, body = await asyncio.wait_for(
                    _post(pod.ip, self.port, offer.head, offer.blobs), limit
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                # Not an answer: the pod may be another activator's by now, or its runtime
                # gone (the kubelet's probe takes it out of the pool). Never deleted on this.
                logger.info("pool pod %s/%s did not specialise: %s", pod.namespace, pod.name, exc)
                continue
            finally:
                self._offering.discard(pod.uid)
            if status == 409:
                continue  # another activator took it
            if status != 200:
                logger.info(
                    "pool pod %s/%s refused to become %s: %d %s",
                    pod.namespace,
                    pod.name,
                    function,
                    status,
                    body[:300].decode("utf-8", "replace"),
                )
                self._later(_delete(pod))
                return "refused"
            self.adopt(_as_function_pod(pod, function), function, began)
            self._when_quiet(functools.partial(self._label_later, pod, offer.fn))
            return "specialised"
        return "taken"

    async def _plan(self, namespace: str, image: str, base_image: str) -> Plan | None:
        """The function image's layers above the pool's base (pulled into the cache) and its
        config's Env, or None when it was not built on that base."""
        key = (image, base_image)
        plan = self._plans.get(key)
        if plan is not None and all(self.blobs.get(la.digest) for la in plan.layers):
            return plan
        plan = await asyncio.to_thread(self._pull, namespace, image, base_image)
        if plan is not None:
            self._plans[key] = plan
        return plan

    def _pull(self, namespace: str, image: str, base_image: str) -> Plan | None:
        registry = self._client(namespace)
        ref = oci.Reference.parse(image)
        base_ref = oci.Reference.parse(base_image)
        found = registry.get_image_manifest(ref)
        base = registry.get_image_manifest(base_ref)
        if found is None or base is None:
            return None
        _, manifest = found
        layers = specialise.own_layers(manifest, base[1])
        if layers is None:
            return None
        config = json.loads(registry.get_blob(ref.repository, manifest["config"]["digest"]))
        for layer in layers:
            if self.blobs.get(layer.digest) is None:
                blob = registry.get_blob(ref.repository, layer.digest)
                if "sha256:" + hashlib.sha256(blob).hexdigest() != layer.digest:
                    raise oci.RegistryError(f"blob {layer.digest} of {ref.repository} is corrupt")
                self.blobs.put(layer.digest, blob)
        env = tuple(str(item) for item in (config.get("config") or {}).get("Env") or [])
        return Plan(ref.repository, layers, env)

    def _client(self, namespace: str) -> oci.Registry:
        secret = kube.get_secret(namespace, self.registry.secret_name)
        credentials = None
        if secret is not None and ".dockerconfigjson" in secret.data:
            credentials = ociauth.Credentials.from_docker_config(
                secret.data[".dockerconfigjson"],
                self.registry.host,
                f"Secret {namespace}/{self.registry.secret_name}",
            )
        return oci.Registry(
            self.registry.host,
            credentials=credentials,
            ca_file=self.registry.ca_file,
            plain_http=self.registry.plain_http,
            timeout=30.0,
        )

    def _label_later(self, pod: IdlePod, fn: function_api.Function) -> None:
        self._later(self._label(pod, fn))

    async def _label(self, pod: IdlePod, fn: function_api.Function) -> None:
        """Makes the pod its function's for every activator and out of its ReplicaSet."""
        at = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        patch = {
            "metadata": {
                "labels": {LABEL_STATE: SPECIALISED, LABEL_FUNCTION: fn.metadata.name},
                "annotations": {pool_rules.ANNOTATION_SPECIALISED_AT: at},
                "ownerReferences": [
                    {
                        "apiVersion": fn.api_version,
                        "kind": fn.kind,
                        "name": fn.metadata.name,
                        "uid": fn.metadata.uid,
                        "controller": True,
                        "blockOwnerDeletion": False,
                    }
                ],
            }
        }
        try:
            await asyncio.to_thread(kube.patch, "v1", "Pod", pod.namespace, pod.name, patch)
        except kube.ApiError as exc:
            logger.error(
                "could not label the specialised pool pod %s/%s (%s): is the namespace's "
                "kfn-warm-pool Role bound to the activator? Deleting it",
                pod.namespace,
                pod.name,
                exc,
            )
            self.drop(pod.uid)
            await _delete(pod)

    def _later(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _container(fn: function_api.Function, image: str) -> Mapping[str, Any]:
    """The function container the operator's Deployment has (its environment above all)."""
    built = deployment.build_deployment(fn, image=image, source_hash="", initial_replicas=None)
    return built["spec"]["template"]["spec"]["containers"][0]


async def _read_sources(
    namespace: str, secrets: frozenset[str], config_maps: frozenset[str]
) -> specialise.Sources:
    async def secret(name: str) -> tuple[str, Mapping[str, bytes] | None]:
        found = await asyncio.to_thread(kube.get_secret, namespace, name)
        return name, None if found is None else found.data

    async def config_map(name: str) -> tuple[str, Mapping[str, str] | None]:
        found = await asyncio.to_thread(kube.get, "v1", "ConfigMap", namespace, name)
        if found is None:
            return name, None
        data = {str(k): str(v) for k, v in (found.get("data") or {}).items()}
        return name, data

    read_secrets = await asyncio.gather(*(secret(name) for name in sorted(secrets)))
    read_maps = await asyncio.gather(*(config_map(name) for name in sorted(config_maps)))
    return specialise.Sources(dict(read_secrets), dict(read_maps))


def _as_function_pod(pod: IdlePod, function: stats.FunctionKey) -> dict[str, Any]:
    """The pod as it is about to be labelled: what discovery makes an endpoint of."""
    return {
        "metadata": {
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "labels": {
                LABEL_COMPONENT: COMPONENT_POOL,
                LABEL_STATE: SPECIALISED,
                LABEL_FUNCTION: function.name,
            },
        },
        "status": {"podIP": pod.ip, "phase": "Running"},
    }


async def _post(ip: str, port: int, head: bytes, blobs: Sequence[bytes]) -> tuple[int, bytes]:
    """``POST /_kfn/specialise`` to a pool pod: the answer's status and body."""
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        length = len(head) + sum(len(blob) for blob in blobs)
        writer.write(
            f"POST {SPECIALISE_PATH} HTTP/1.1\r\nHost: {ip}\r\n"
            f"Content-Type: application/vnd.kfn.specialise\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        writer.write(head)
        for blob in blobs:
            writer.write(blob)
            await writer.drain()
        await writer.drain()
        answer_head = await reader.readuntil(b"\r\n\r\n")
        if len(answer_head) > ANSWER_LIMIT:
            raise ValueError("answer head too long")
        status = int(answer_head.split(b" ", 2)[1])
        size = 0
        for line in answer_head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                size = int(value.strip())
        body = await reader.readexactly(min(size, ANSWER_LIMIT))
        return status, body
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _delete(pod: IdlePod) -> None:
    try:
        await asyncio.to_thread(kube.delete, "v1", "Pod", pod.namespace, pod.name)
    except kube.ApiError as exc:
        logger.error("could not delete the pool pod %s/%s: %s", pod.namespace, pod.name, exc)


def offer_order(pods: list[IdlePod], function: stats.FunctionKey) -> list[IdlePod]:
    """The pods in an order of the function's own: by name, from a place its name picks.
    Functions starting at once (on this activator or another) then try different pods first,
    rather than all the same one."""
    ordered = sorted(pods, key=lambda pod: pod.name)
    digest = hashlib.sha256(f"{function.namespace}/{function.name}".encode()).digest()
    start = int.from_bytes(digest[:4], "big") % len(ordered)
    return ordered[start:] + ordered[:start]


def pool_of(fn: function_api.Function) -> str | None:
    """The pool ``fn``'s cold starts may come from (its key's hash), or None when it cannot
    use one. Whether the chart has a pool image for its runtime shows here as whether that
    pool has pods at all, so any image stands in for it."""
    if fn.spec.runtime is None:
        return None
    found = pool_rules.poolability(fn, {fn.spec.runtime: "pool"})
    return found.hash if isinstance(found, pool_rules.PoolKey) else None
