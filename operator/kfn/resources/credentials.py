"""Each function namespace's registry credential Secret, and when to renew it (pure).

Build Jobs run in the Function's namespace, so whatever credential they push with, that
namespace's users can read; it must therefore be good for that namespace's images only. With
``managed`` credentials the operator issues a robot credential per namespace (Harbor's robot
accounts per project are the model) that kfn's token service accepts for ``fn/<namespace>/*``
alone; with ``shared`` it copies one Secret of the release namespace (every namespace then
holds the same credential, which the chart warns about). Either way the Secret is a
``kubernetes.io/dockerconfigjson`` that build Jobs mount and function pods pull with.

The Secret lists every Function of the namespace among its owners, so the garbage collector
deletes it with the last one; a Secret of that name kfn did not make (without the
:data:`LABEL_CREDENTIALS` label) is never touched.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from kfn import ociauth
from kfn.registry_auth import policy
from kfn.resources import objects

Mode = Literal["managed", "shared", "provided", "none"]
MODES: Final = ("managed", "shared", "provided", "none")
LABEL_CREDENTIALS: Final = "kfn.dev/registry-credentials"
ANNOTATION_EXPIRES: Final = "kfn.dev/expires"
DOCKER_CONFIG_KEY: Final = ".dockerconfigjson"


@dataclasses.dataclass(frozen=True)
class Settings:
    """How namespaces get their credential (the chart's ``registry.credentials``)."""

    mode: Mode
    secret_name: str
    registry: str
    robot_key: bytes = dataclasses.field(default=b"", repr=False)
    validity: datetime.timedelta = datetime.timedelta(days=30)
    shared_secret: str = ""
    """With ``shared``: the Secret copied, as ``<namespace>/<name>``."""


def managed_by_kfn(secret: Mapping[str, Any] | None) -> bool:
    labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_CREDENTIALS) in ("managed", "shared")


def docker_config_of(secret: Mapping[str, Any]) -> bytes:
    """The Secret's ``.dockerconfigjson``, decoded (empty when it has none)."""
    data = (secret.get("data") or {}).get(DOCKER_CONFIG_KEY)
    return base64.b64decode(data) if data else b""


def credentials_of(
    secret: Mapping[str, Any], registry: str, source: str
) -> ociauth.Credentials | None:
    """The login a credential Secret holds for ``registry`` (ValueError when malformed)."""
    data = docker_config_of(secret)
    if not data:
        raise ValueError(f"{source} has no {DOCKER_CONFIG_KEY} key")
    return ociauth.Credentials.from_docker_config(data, registry, source)


def robot_secret(
    settings: Settings,
    namespace: str,
    owners: Sequence[objects.OwnerReference],
    now: datetime.datetime,
) -> dict[str, Any]:
    """A freshly issued robot credential of ``namespace`` as its Secret."""
    robot = policy.issue_robot(settings.robot_key, namespace, now + settings.validity)
    config = ociauth.docker_config(settings.registry, robot.username, robot.password)
    return _secret(
        settings,
        namespace=namespace,
        kind="managed",
        config=config,
        owners=owners,
        annotations={ANNOTATION_EXPIRES: _iso(robot.expires)},
    )


def shared_secret(
    settings: Settings,
    namespace: str,
    source: Mapping[str, Any],
    owners: Sequence[objects.OwnerReference],
) -> dict[str, Any]:
    """A copy of the shared Secret ``source`` for ``namespace``."""
    return _secret(
        settings,
        namespace=namespace,
        kind="shared",
        config=docker_config_of(source),
        owners=owners,
        annotations={},
    )


def _secret(
    settings: Settings,
    *,
    namespace: str,
    kind: str,
    config: bytes,
    owners: Sequence[objects.OwnerReference],
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": settings.secret_name,
            "namespace": namespace,
            "labels": {objects.LABEL_MANAGED_BY: objects.MANAGER, LABEL_CREDENTIALS: kind},
            "annotations": dict(annotations),
            # Every Function of the namespace owns it; none is its controller.
            "ownerReferences": [{**owner, "controller": False} for owner in owners],
        },
        "data": {DOCKER_CONFIG_KEY: base64.b64encode(config).decode()},
    }


def renewal_due(
    settings: Settings, secret: Mapping[str, Any], namespace: str, now: datetime.datetime
) -> bool:
    """Whether a kfn-made managed Secret must be issued again: past half its validity, or not
    a valid robot credential of ``namespace`` under the robot key (unreadable, edited, or made
    under an earlier key), which kfn can tell without asking the registry."""
    if not managed_by_kfn(secret) or settings.mode != "managed":
        return False
    try:
        creds = credentials_of(secret, settings.registry, "the credential Secret")
    except ValueError:
        return True
    if creds is None:
        return True
    state, owner = policy.check_robot(settings.robot_key, creds.username, creds.password, now)
    if state != "valid" or owner != namespace:
        return True
    return policy.needs_renewal(creds.password, lifetime=settings.validity, now=now)


def copy_differs(secret: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    """Whether a shared copy no longer holds its source's credential."""
    return docker_config_of(secret) != docker_config_of(source)


def missing_owner(secret: Mapping[str, Any], owner: objects.OwnerReference) -> bool:
    refs = (secret.get("metadata") or {}).get("ownerReferences") or []
    return not any(ref.get("uid") == owner["uid"] for ref in refs)


def owner_patch(owner: objects.OwnerReference) -> dict[str, Any]:
    """A strategic merge patch adding ``owner`` (ownerReferences merge by uid)."""
    return {"metadata": {"ownerReferences": [{**owner, "controller": False}]}}


def parse_validity(text: str) -> datetime.timedelta:
    """``720h`` or ``90m`` → a duration (the chart's ``managed.validity``)."""
    unit = text[-1:]
    amount = int(text[:-1] or "0")
    if unit not in ("h", "m") or amount <= 0:
        raise ValueError(f"a credential validity must look like 720h or 90m, not {text!r}")
    return datetime.timedelta(hours=amount) if unit == "h" else datetime.timedelta(minutes=amount)


def from_env(env: Mapping[str, str], registry: str) -> Settings:
    """The credential settings the chart puts in the operator's environment."""
    mode = env.get("KFN_REGISTRY_CREDENTIALS") or "none"
    if mode not in MODES:
        raise ValueError(f"KFN_REGISTRY_CREDENTIALS must be one of {', '.join(MODES)}")
    key = (env.get("KFN_REGISTRY_ROBOT_KEY") or "").strip().encode()
    if mode == "managed" and not key:
        raise ValueError("managed registry credentials need the robot key (KFN_REGISTRY_ROBOT_KEY)")
    shared = env.get("KFN_REGISTRY_SHARED_SECRET") or ""
    if mode == "shared" and not shared:
        raise ValueError("shared registry credentials need KFN_REGISTRY_SHARED_SECRET")
    namespace = env.get("KFN_NAMESPACE") or "kfn-system"
    return Settings(
        mode=mode,  # type: ignore[arg-type]
        secret_name=env.get("KFN_REGISTRY_SECRET_NAME") or "kfn-registry",
        registry=registry,
        robot_key=key,
        validity=parse_validity(env.get("KFN_REGISTRY_CREDENTIAL_VALIDITY") or "720h"),
        shared_secret=f"{namespace}/{shared}" if shared else "",
    )


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(settings: Settings, namespace: str) -> str:
    """How a user names the credential in a message."""
    return f"Secret {namespace}/{settings.secret_name}"
