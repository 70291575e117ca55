"""Warm pools of opted-in namespaces: kept as :mod:`kfn.resources.pools` decides.

For a namespace: its pools' ReplicaSets applied (server-side, as every child), those no
Function wants any more deleted, the ``kfn.pool`` ServiceAccount and NetworkPolicy kept while
any pool or pool pod is there, and idle pods of an older template replaced. For a claimed pod:
deleted once its Function's own Deployment has a ready pod, or when it stayed claimed too long.

What each Namespace asks for is remembered here from its events (:func:`observe_namespace`),
so the reconciler of a Function can say, without I/O, whether its cold starts come from a pool.
The handlers (:mod:`kfn.operator.handlers`) say when.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from kfn import kube
from kfn.api import function, meta
from kfn.operator import settings
from kfn.resources import objects, pools, status

API_VERSION = meta.API_VERSION
POOL_SELECTOR = ",".join(f"{k}={v}" for k, v in pools.labels().items())
RESYNC_SECONDS = 300.0

_lock = threading.Lock()
_namespaces: dict[str, pools.NamespacePools] = {}
_claims: dict[str, datetime.datetime] = {}
_resynced: dict[str, datetime.datetime] = {}


# --- what namespaces ask for -------------------------------------------------------------------


def observe_namespace(
    body: Mapping[str, Any],
) -> tuple[pools.NamespacePools | None, pools.NamespacePools]:
    """Remembers what a Namespace asks for; returns what it asked before (None: first sight)
    and now."""
    meta_ = body.get("metadata") or {}
    now = pools.namespace_pools(
        meta_.get("labels"),
        meta_.get("annotations"),
        settings.warm_pool_default_size(),
        enabled=settings.warm_pools_enabled(),
    )
    with _lock:
        before = _namespaces.get(str(meta_.get("name", "")))
        _namespaces[str(meta_.get("name", ""))] = now
    return before, now


def forget_namespace(name: str) -> None:
    with _lock:
        _namespaces.pop(name, None)
        _resynced.pop(name, None)


def namespace(name: str) -> pools.NamespacePools | None:
    """What the namespace asks for, or None before its first event reached this process."""
    with _lock:
        return _namespaces.get(name)


def warm_pool(fn: function.Function) -> status.Verdict | None:
    """The Function's ``WarmPool`` verdict, without I/O; None while its namespace is unknown."""
    found = namespace(fn.metadata.namespace)
    if found is None:
        return None
    return status.Verdict(*pools.condition(fn, found, settings.pool_images()))


def warm_pool_changed(body: Mapping[str, Any]) -> bool:
    """Whether a Function's ``WarmPool`` condition, as ``body`` has it, is not what it should
    be now (its status is then worth refreshing)."""
    try:
        fn = function.Function.model_validate(dict(body))
    except pydantic.ValidationError:
        return False
    verdict = warm_pool(fn)
    if verdict is None:
        return False
    found = next(
        (
            c
            for c in (fn.status.conditions if fn.status else [])
            if c.type == function.ConditionType.WARM_POOL
        ),
        None,
    )
    return found is None or (found.status, found.reason, found.message) != (
        verdict.status,
        verdict.reason,
        verdict.message,
    )


def resync_due(name: str, now: datetime.datetime) -> bool:
    """Whether the namespace's pools were not reconciled by a resync in the last 5 minutes
    (every Function's resync asks; one of them does it)."""
    with _lock:
        last = _resynced.get(name)
        if last is not None and now - last < datetime.timedelta(seconds=RESYNC_SECONDS):
            return False
        _resynced[name] = now
        return True


# --- the pools of a namespace ---------------------------------------------------------------


def _functions(ns: str) -> list[function.Function]:
    """The namespace's Functions that parse and are not being deleted."""
    found = []
    for body in kube.list_objects(API_VERSION, function.KIND, ns):
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            continue
        try:
            found.append(function.Function.model_validate(body))
        except pydantic.ValidationError:
            continue  # its own reconcile says why
    return found


def _delete_labelled(api_version: str, kind: str, ns: str, name: str) -> bool:
    """Deletes a pool object of kfn's (never a same-named one the user made)."""
    live = kube.get(api_version, kind, ns, name)
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    if live is None or any(labels.get(k) != v for k, v in pools.labels().items()):
        return False
    return kube.delete(api_version, kind, ns, name)


def reconcile_namespace(ns: str) -> list[str]:
    """Brings the namespace's pools in line with what it asks for and its Functions; returns
    what it created, changed or deleted (``Kind/name``), for the log. Nothing while the
    namespace is unknown."""
    asked = namespace(ns)
    if asked is None:
        return []
    images = settings.pool_images()
    wanted: set[pools.PoolKey] = set()
    if asked.opted_in and asked.size > 0:
        wanted = pools.pools_wanted(True, asked.size, _functions(ns), images)
    platform = settings.builds().platform
    replicasets = [
        pools.build_pool_replicaset(key, asked.size, images[key.runtime], platform)
        for key in sorted(wanted, key=lambda k: k.name)
    ]
    peers = settings.network_peers()
    done = []
    live = {
        str((rs.get("metadata") or {}).get("name", "")): rs
        for rs in kube.list_objects("apps/v1", "ReplicaSet", ns, POOL_SELECTOR)
    }
    if replicasets:
        # In apply order: the pods start behind their policy.
        kube.apply(pools.build_pool_service_account(ns))
        if peers is not None:
            kube.apply(pools.build_pool_network_policy(ns, peers))
        for replicaset in replicasets:
            name = replicaset["metadata"]["name"]
            if name not in live or not objects.contains(live[name], replicaset):
                kube.apply(replicaset)
                done.append(f"ReplicaSet/{name}")
    names = {rs["metadata"]["name"] for rs in replicasets}
    for name in sorted(set(live) - names):
        if kube.delete("apps/v1", "ReplicaSet", ns, name):
            done.append(f"ReplicaSet/{name} deleted")
    pods = kube.list_objects("v1", "Pod", ns, POOL_SELECTOR)
    for name in pools.stale_idle_pods(pods, replicasets):
        if kube.delete("v1", "Pod", ns, name):
            done.append(f"Pod/{name} deleted (older template)")
    # The policy stays while any pool pod runs, claimed ones too: taking it away would open
    # them to every pod of the cluster. Turned off in the chart, it goes as functions' do.
    left = bool(replicasets) or any(
        not (p.get("metadata") or {}).get("deletionTimestamp") for p in pods
    )
    policy = ("networking.k8s.io/v1", "NetworkPolicy", ns, pools.POOL_NETWORK_POLICY)
    if (peers is None or not left) and _delete_labelled(*policy):
        done.append(f"NetworkPolicy/{pools.POOL_NETWORK_POLICY} deleted")
    account = ("v1", "ServiceAccount", ns, pools.POOL_SERVICE_ACCOUNT)
    if not left and _delete_labelled(*account):
        done.append(f"ServiceAccount/{pools.POOL_SERVICE_ACCOUNT} deleted")
    return done


def pool_policy_intact(live: Mapping[str, Any]) -> bool:
    """Whether a namespace's pool NetworkPolicy still has every field kfn gave it (one
    deleted or widened by hand is put back: it keeps pool pods behind the activator)."""
    peers = settings.network_peers()
    if peers is None:
        return True
    ns = str((live.get("metadata") or {}).get("namespace", ""))
    return objects.contains(live, pools.build_pool_network_policy(ns, peers))


# --- claimed pods -------------------------------------------------------------------------------


def note_claim(pod: Mapping[str, Any], now: datetime.datetime) -> None:
    """Remembers when a pool pod was first seen claimed (forgets it once it is not)."""
    uid = str((pod.get("metadata") or {}).get("uid", ""))
    with _lock:
        seen = pools.claim_seen(_claims.get(uid), pod, now)
        if seen is None:
            _claims.pop(uid, None)
        else:
            _claims[uid] = seen


def forget_pod(pod: Mapping[str, Any]) -> None:
    with _lock:
        _claims.pop(str((pod.get("metadata") or {}).get("uid", "")), None)


def retire(
    pods: Sequence[Mapping[str, Any]], now: datetime.datetime
) -> tuple[list[pools.Retirement], float | None]:
    """Deletes the claimed pool pods of one namespace that are done (:func:`kfn.resources.
    pools.retire`), reading the ready replicas of the Deployments that serve them. Returns
    what went, and in how many seconds a pod still claimed must be looked at again (None:
    none is)."""
    if not pods:
        return [], None
    ns = str((pods[0].get("metadata") or {}).get("namespace", ""))
    ready: dict[str, int] = {}
    at_zero: set[str] = set()
    for name in {pools.serving_deployment(pod) for pod in pods} - {None}:
        assert name is not None
        live = kube.get("apps/v1", "Deployment", ns, name)
        ready[name] = int(((live or {}).get("status") or {}).get("readyReplicas") or 0)
        if live is not None and not (live.get("spec") or {}).get("replicas"):
            at_zero.add(name)
    with _lock:
        since = dict(_claims)
    gone = pools.retire(pods, ready, since, now, scaled_to_zero=at_zero)
    for retirement in gone:
        kube.delete("v1", "Pod", ns, retirement.pod)
    retired = {r.pod for r in gone}
    waits = [
        pools.CLAIM_LIMIT_SECONDS - (now - since[uid]).total_seconds()
        for pod in pods
        if (meta_ := pod.get("metadata") or {}).get("name") not in retired
        and (uid := str(meta_.get("uid", ""))) in since
    ]
    # A specialised pod whose function is at zero goes after the grace: look again then.
    waits += [
        pools.IDLE_GRACE_SECONDS - (now - at).total_seconds()
        for pod in pods
        if (pod.get("metadata") or {}).get("name") not in retired
        and pools.serving_deployment(pod) in at_zero
        and (at := pools.specialised_at(pod)) is not None
    ]
    return gone, (max(0.0, min(waits)) + 1.0 if waits else None)
