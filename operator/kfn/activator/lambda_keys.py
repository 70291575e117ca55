"""The access keys Lambda API callers sign with: each namespace's ``kfn-lambda-access-keys``.

A namespace may hold one Secret of that name. Each of its data keys is an access key id; its
value is JSON naming the ServiceAccount of that namespace the key acts as, and the secret
access key::

    AKIAKFNEXAMPLE0001: {"serviceAccount": "ci", "secretAccessKey": "wJalr..."}

A request signed with the key is the ServiceAccount's (``system:serviceaccount:<ns>:<sa>``),
authorised by RBAC as a bearer of its token is. An entry that does not parse is skipped
(and logged, without its value). The activator may read Secrets of this one name only (the
chart's RBAC names it), so it lists and watches them with the field selector
``metadata.name=kfn-lambda-access-keys``.

:func:`keys_of` is pure; :class:`AccessKeys` keeps the keys of every namespace in a
:class:`kfn.kube.cache.Store` and answers which keys hold an access key id.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from kfn import kube
from kfn.activator import sigv4
from kfn.kube import cache

logger = logging.getLogger(__name__)

SECRET_NAME: Final = "kfn-lambda-access-keys"  # noqa: S105 - a name, not a password
FIELD_SELECTOR: Final = f"metadata.name={SECRET_NAME}"
#: A ServiceAccount's name (a DNS subdomain).
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def keys_of(secret: Mapping[str, Any]) -> tuple[sigv4.Key, ...]:
    """The keys one ``kfn-lambda-access-keys`` Secret holds (entries that do not parse are
    skipped)."""
    meta = secret.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    if meta.get("name") != SECRET_NAME or not namespace:
        return ()
    found = []
    for key_id, encoded in sorted((secret.get("data") or {}).items()):
        try:
            value = json.loads(base64.b64decode(str(encoded), validate=True))
        except (binascii.Error, ValueError):
            logger.warning("%s/%s: key %s is not base64 JSON", namespace, SECRET_NAME, key_id)
            continue
        account = value.get("serviceAccount") if isinstance(value, dict) else None
        secret_key = value.get("secretAccessKey") if isinstance(value, dict) else None
        if not isinstance(account, str) or not _NAME.match(account):
            logger.warning("%s/%s: key %s names no ServiceAccount", namespace, SECRET_NAME, key_id)
            continue
        if not isinstance(secret_key, str) or not secret_key:
            logger.warning("%s/%s: key %s has no secretAccessKey", namespace, SECRET_NAME, key_id)
            continue
        found.append(sigv4.Key(str(key_id), secret_key, namespace, account))
    return tuple(found)


def _parse(body: kube.Object, previous: tuple[sigv4.Key, ...] | None) -> tuple[sigv4.Key, ...]:
    del previous
    return keys_of(body)


class AccessKeys:
    """Every namespace's access keys, by access key id (see the module doc)."""

    def __init__(self, reflect: cache.Reflect | None = None) -> None:
        # Tests pass a fake source of events; the cluster's is kube.reflect, narrowed to
        # the one Secret name RBAC lets the activator read.
        source = reflect or functools.partial(kube.reflect, field_selector=FIELD_SELECTOR)
        self.store: cache.Store[tuple[sigv4.Key, ...]] = cache.Store(
            "v1", "Secret", _parse, listener=lambda _: self._index(), reflect=source
        )
        self._by_id: dict[str, tuple[sigv4.Key, ...]] = {}

    def _index(self) -> None:
        by_id: dict[str, list[sigv4.Key]] = {}
        for keys in self.store.values():
            for key in keys:
                by_id.setdefault(key.access_key_id, []).append(key)
        # Replaced whole: readers on the event loop see one table or the next.
        self._by_id = {k: tuple(sorted(v, key=lambda key: key.namespace)) for k, v in by_id.items()}

    def holding(self, access_key_id: str) -> tuple[sigv4.Key, ...]:
        return self._by_id.get(access_key_id, ())

    def start(self) -> None:
        self.store.start()

    def stop(self) -> None:
        self.store.stop()


class StaticKeys:
    """A fixed set of keys (an activator run alone, and tests)."""

    def __init__(self, keys: tuple[sigv4.Key, ...]) -> None:
        self.keys = keys

    def holding(self, access_key_id: str) -> tuple[sigv4.Key, ...]:
        return tuple(k for k in self.keys if k.access_key_id == access_key_id)
