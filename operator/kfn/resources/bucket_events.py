"""The Secret that tells a namespace how to sign its stores' notifications (pure).

The bucket worker takes a notification only with the token of its path
(:mod:`kfn.authn.webhooks`). The tokens are derived from a key only kfn holds, so the
operator writes them where the namespace's users can read them and nobody who may only read
Triggers can: the Secret :data:`kfn.authn.webhooks.SECRET_NAME` of each namespace with Push
Triggers. Its keys:

* ``url``: ``http://kfn:<token>@<bucket service>/events/<namespace>``, for a store that takes
  only a URL (versitygw's ``--event-webhook-url``);
* ``endpoint`` and ``token``: the same URL without the token, and the token, for a store that
  sends a configured header (MinIO's ``endpoint`` and ``auth_token``);
* ``<trigger>.url``, ``<trigger>.endpoint`` and ``<trigger>.token``: the same for each Push
  Trigger's own path, ``/events/<namespace>/<trigger>``.

Every Push Trigger of the namespace owns it, so it goes with the last one.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Final

from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.authn import webhooks
from kfn.resources import objects

#: Marks the Secret as kfn's: one of that name without it is left alone.
LABEL: Final = "kfn.dev/bucket-events"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the Secrets are made from: the key tokens derive from, and where stores reach the
    bucket worker (``http://<release>-kfn-bucket.<namespace>.svc.<domain>:<port>``)."""

    key: bytes = dataclasses.field(repr=False)
    base_url: str


def from_env(env: Mapping[str, str]) -> Settings | None:
    """The settings the chart puts in the operator's environment (whatever
    ``bucket.events.auth`` says, so stores can be given tokens before they must sign); None
    without a key, and then no Secret is written."""
    key = (env.get("KFN_BUCKET_EVENTS_KEY") or "").encode()
    if not key:
        return None
    base_url = env.get("KFN_BUCKET_URL") or ""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError("KFN_BUCKET_URL must be the bucket worker's http(s) URL")
    return Settings(key, base_url.rstrip("/"))


@dataclasses.dataclass(frozen=True, order=True)
class PushTrigger:
    """A Push Trigger as the Secret needs it."""

    name: str
    uid: str


def push_triggers(bodies: Iterable[Mapping[str, Any]]) -> list[PushTrigger]:
    """The Push Triggers (bucket Triggers in mode Push, not being deleted) among ``bodies``,
    by name."""
    found = set()
    for body in bodies:
        metadata = body.get("metadata") or {}
        bucket = (body.get("spec") or {}).get("bucket")
        if not isinstance(bucket, Mapping) or metadata.get("deletionTimestamp"):
            continue
        if bucket.get("mode", "Push") != "Push" or not metadata.get("uid"):
            continue
        found.add(PushTrigger(str(metadata.get("name") or ""), str(metadata["uid"])))
    return sorted(found)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _entries(prefix: str, base_url: str, path: str, token: str) -> dict[str, str]:
    return {
        f"{prefix}url": webhooks.signed_url(base_url, path, token),
        f"{prefix}endpoint": base_url.rstrip("/") + path,
        f"{prefix}token": token,
    }


def secret_data(
    settings: Settings, namespace: str, triggers: Iterable[PushTrigger]
) -> dict[str, str]:
    """The Secret's ``data`` (base64), see the module doc."""
    key, base_url = settings.key, settings.base_url
    plain = _entries("", base_url, webhooks.path(namespace), webhooks.token(key, namespace))
    for trigger in triggers:
        token = webhooks.token(key, namespace, trigger.name)
        path = webhooks.path(namespace, trigger.name)
        plain |= _entries(f"{trigger.name}.", base_url, path, token)
    return {name: _b64(value) for name, value in sorted(plain.items())}


def secret(settings: Settings, namespace: str, triggers: Iterable[PushTrigger]) -> dict[str, Any]:
    """The namespace's Secret, owned by every Push Trigger in ``triggers``."""
    owned = sorted(triggers)
    owners = [
        {
            "apiVersion": meta.API_VERSION,
            "kind": trigger_api.KIND,
            "name": trigger.name,
            "uid": trigger.uid,
            "controller": False,
            "blockOwnerDeletion": False,
        }
        for trigger in owned
    ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": webhooks.SECRET_NAME,
            "namespace": namespace,
            "labels": {objects.LABEL_MANAGED_BY: objects.MANAGER, LABEL: "true"},
            "ownerReferences": owners,
        },
        "type": "Opaque",
        "data": secret_data(settings, namespace, owned),
    }


def ours(live: Mapping[str, Any]) -> bool:
    """Whether a live Secret of that name is kfn's to write."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL) == "true"


def differs(live: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether the live Secret holds other data or owners than ``wanted``."""
    owners = {o.get("uid") for o in (live.get("metadata") or {}).get("ownerReferences") or []}
    wanted_owners = {o["uid"] for o in wanted["metadata"]["ownerReferences"]}
    return live.get("data") != wanted["data"] or owners != wanted_owners
