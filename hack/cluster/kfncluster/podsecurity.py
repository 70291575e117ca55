"""The securityContext every container of the local cluster's add-ons runs with: the
restricted Pod Security Standard, a read-only root, kfn's unprivileged user."""

from __future__ import annotations

from typing import Any

NONROOT = 65532


def restricted_container() -> dict[str, Any]:
    """A container's securityContext (a new dict each call: callers may extend it)."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": NONROOT,
        "runAsGroup": NONROOT,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
