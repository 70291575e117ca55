"""The registry credential of a Function's namespace: made, kept, renewed, and used.

Called by every reconcile of a Function (level-based, cheap: one GET of one Secret). What the
Secret holds and when to renew it are decided in :mod:`kfn.resources.credentials`; this module
reads and writes it, and gives the operator a registry client with the namespace's credential
(the operator looks up built images with it, as the build Job would push them).

A credential that is missing or refused is reported as a verdict naming the Secret, never as
an exception: the user (or the admin) has something to fix, and the Function says what.
"""

from __future__ import annotations

import functools
import logging
import pathlib
import tempfile
from typing import Any

from kfn import clock, kube, oci
from kfn.api import function
from kfn.operator import settings
from kfn.resources import credentials, objects, status

_logger = logging.getLogger(__name__)


def ensure(fn: function.Function) -> status.Verdict | None:
    """Makes sure ``fn``'s namespace holds its credential Secret; None when it does.

    ``managed`` and ``shared`` Secrets are created (owned by every Function of the
    namespace) and renewed; ``provided`` ones are only looked for.
    """
    cfg = settings.registry_credentials()
    if cfg.mode == "none":
        return None
    ns = fn.metadata.namespace
    live = kube.get("v1", "Secret", ns, cfg.secret_name)
    if cfg.mode == "provided":
        return None if live is not None else _provided_missing(cfg, ns)
    owner = objects.owner_reference(fn)
    if live is None:
        made = _made(cfg, ns, [owner])
        if made is None:
            return _shared_missing(cfg)
        kube.apply(made)
        _logger.info("issued %s (%s)", credentials.describe(cfg, ns), cfg.mode)
        return None
    if not credentials.managed_by_kfn(live):
        return None  # someone else's Secret of that name: theirs to keep
    if credentials.missing_owner(live, owner):
        kube.patch(
            "v1", "Secret", ns, cfg.secret_name, credentials.owner_patch(owner), strategic=True
        )
    return _renew(cfg, ns, live, owner)


def _renew(
    cfg: credentials.Settings,
    ns: str,
    live: dict[str, Any],
    owner: objects.OwnerReference,
) -> status.Verdict | None:
    """Writes a fresh credential when the one in ``live`` is due (or its source changed)."""
    if cfg.mode == "shared":
        source = _shared_source(cfg)
        if source is None:
            return _shared_missing(cfg)
        due = credentials.copy_differs(live, source)
    else:
        due = credentials.renewal_due(cfg, live, ns, clock.utcnow())
    fresh = _made(cfg, ns, [owner]) if due else None
    if fresh is not None:
        patch = {
            "data": fresh["data"],
            "metadata": {"annotations": fresh["metadata"]["annotations"]},
        }
        kube.patch("v1", "Secret", ns, cfg.secret_name, patch)
        _logger.info("renewed %s", credentials.describe(cfg, ns))
    return None


def _provided_missing(cfg: credentials.Settings, ns: str) -> status.Verdict:
    return status.Verdict(
        "False",
        function.Reason.REGISTRY_CREDENTIALS_NOT_FOUND,
        f"{credentials.describe(cfg, ns)} does not exist: this cluster's registry credentials "
        "are provided by its admin, one kubernetes.io/dockerconfigjson Secret per namespace "
        f"for {cfg.registry} (docs/install.md)",
    )


def _made(
    cfg: credentials.Settings, ns: str, owners: list[objects.OwnerReference]
) -> dict[str, Any] | None:
    if cfg.mode == "managed":
        return credentials.robot_secret(cfg, ns, owners, clock.utcnow())
    source = _shared_source(cfg)
    if source is None:
        return None
    _logger.warning(
        "copying the shared registry credential %s into namespace %s: every namespace holding "
        "it can read and overwrite every other namespace's images",
        cfg.shared_secret,
        ns,
    )
    return credentials.shared_secret(cfg, ns, source, owners)


def _shared_source(cfg: credentials.Settings) -> dict[str, Any] | None:
    namespace, _, name = cfg.shared_secret.partition("/")
    return kube.get("v1", "Secret", namespace, name)


def _shared_missing(cfg: credentials.Settings) -> status.Verdict:
    return status.Verdict(
        "False",
        function.Reason.REGISTRY_CREDENTIALS_NOT_FOUND,
        f"the shared registry credential Secret {cfg.shared_secret} does not exist "
        "(the chart's registry.credentials.shared.secretName)",
    )


def registry_client(namespace: str) -> oci.Registry:
    """A client of the build registry with ``namespace``'s credential (when there is one).

    Raises :class:`kfn.oci.RegistryAuthError` when the Secret cannot be read as a login.
    """
    cfg = settings.builds()
    creds: oci.Credentials | None = None
    mode = settings.registry_credentials()
    if mode.mode != "none":
        source = credentials.describe(mode, namespace)
        secret = kube.get("v1", "Secret", namespace, mode.secret_name)
        if secret is not None:
            try:
                creds = credentials.credentials_of(secret, cfg.registry, source)
            except ValueError as exc:
                raise oci.RegistryAuthError(f"{exc}; fix or delete it") from None
    return oci.Registry(
        cfg.registry,
        credentials=creds,
        ca_file=ca_file(cfg.registry_ca_pem),
        plain_http=cfg.registry_plain_http,
        timeout=10,
    )


@functools.cache
def ca_file(pem: str) -> str | None:
    """The chart's CA bundle as a file (the TLS library reads files), made once."""
    if not pem.strip():
        return None
    directory = pathlib.Path(tempfile.mkdtemp(prefix="kfn-registry-ca-"))
    path = directory / "ca.crt"
    path.write_text(pem)
    return str(path)
