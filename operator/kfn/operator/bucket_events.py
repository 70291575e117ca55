"""Each namespace's ``kfn-bucket-events`` Secret: the tokens its stores sign notifications with.

What the Secret holds is decided in :mod:`kfn.resources.bucket_events`; this module writes it.
Level-based, like the Trigger status (:mod:`kfn.operator.triggers`): on any bucket Trigger's
event the operator recomputes its namespace's Secret from the index of all Triggers and
applies it when it differs from the Secret in the cluster. What it wrote is kept for
:data:`RECHECK` seconds, so the Trigger events the workers' status writes cause cost no API
call, while a Secret someone deleted or edited is put back within that time (on the next
event of a bucket Trigger there). A namespace left without Push Triggers needs no Secret: the
Triggers own it, and the garbage collector deletes it with the last one. A Secret of that name
kfn did not make is left alone, and the operator says so once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

import kopf

from kfn import expiring, kube
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.authn import webhooks
from kfn.operator import metrics, settings
from kfn.resources import bucket_events

#: Seconds a written Secret is trusted to be as written.
RECHECK: Final = 300.0

_written: expiring.Expiring[str, dict[str, Any]] = expiring.Expiring()
_foreign: set[str] = set()


def sync(
    config: bucket_events.Settings,
    namespace: str,
    bodies: list[Mapping[str, Any]],
    logger: Any,
    *,
    now: float,
) -> None:
    """Makes the namespace's Secret hold the tokens of its Push Triggers in ``bodies``."""
    triggers = bucket_events.push_triggers(bodies)
    if not triggers:
        _written.drop(namespace)
        return
    wanted = bucket_events.secret(config, namespace, triggers)
    if _written.get(namespace, now) == wanted:
        return
    live = kube.get("v1", "Secret", namespace, webhooks.SECRET_NAME)
    if live is not None and not bucket_events.ours(live):
        if namespace not in _foreign:
            _foreign.add(namespace)
            logger.warning(
                "Secret %s/%s was not made by kfn; its bucket Triggers' stores find their "
                "tokens nowhere until it is deleted",
                namespace, webhooks.SECRET_NAME,
            )  # fmt: skip
        return
    _foreign.discard(namespace)
    if live is None or bucket_events.differs(live, wanted):
        kube.apply(wanted)
        logger.info("wrote Secret %s/%s for %d Push Triggers",
                    namespace, webhooks.SECRET_NAME, len(triggers))  # fmt: skip
    _written.put(namespace, wanted, now + RECHECK)


@kopf.on.event(meta.GROUP, meta.VERSION, trigger_api.PLURAL)
@metrics.measured("Trigger")
def bucket_trigger_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """A bucket Trigger came, changed or went: its namespace's Secret follows."""
    body = event.get("object") or {}
    if not isinstance((body.get("spec") or {}).get("bucket"), Mapping):
        return
    config = settings.bucket_events_settings()
    if config is None:
        return
    metadata = body.get("metadata") or {}
    namespace, uid = str(metadata.get("namespace") or ""), metadata.get("uid")
    index = kwargs["triggers_by_name"]
    # The index may not have this event yet: the event's own body wins.
    bodies: list[Mapping[str, Any]] = [
        other
        for key in index
        if key[0] == namespace
        for other in index.get(key, [])
        if (other.get("metadata") or {}).get("uid") != uid
    ]
    if event.get("type") != "DELETED":
        bodies.append(body)
    try:
        sync(config, namespace, bodies, logger, now=time.monotonic())
    except kube.ApiError as exc:
        logger.warning("writing Secret %s/%s failed: %s", namespace, webhooks.SECRET_NAME, exc)
