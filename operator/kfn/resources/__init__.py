"""Pure builders of the Kubernetes objects a Function owns: ServiceAccount, Service, Deployment.

Input: a validated :class:`kfn.api.function.Function` (with ``metadata.uid`` for the owner
reference) and the facts the operator found out (image digest, source hash). Output: plain dicts
ready for the API. No I/O and no clock here, so golden-file tests pin the output exactly
(``tests/unit/resources/golden``; ``KFN_UPDATE_GOLDEN=1`` rewrites them).

Replicas belong to the autoscaler: :func:`kfn.resources.deployment.build_deployment` writes
``spec.replicas`` only when the caller passes ``initial_replicas`` (at creation), so applying the
Deployment later never fights the autoscaler's scale subresource.

Build inputs are identified by :func:`kfn.resources.source.source_hash`.
"""

from kfn.resources.deployment import build_deployment
from kfn.resources.objects import LABEL_COMPONENT, LABEL_FUNCTION, labels_for, owner_reference
from kfn.resources.service import build_service, build_service_account
from kfn.resources.source import source_hash

__all__ = [
    "LABEL_COMPONENT",
    "LABEL_FUNCTION",
    "build_deployment",
    "build_service",
    "build_service_account",
    "labels_for",
    "owner_reference",
    "source_hash",
]
