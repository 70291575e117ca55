"""The cluster admin's choices that shape every function pod and build Job (pure).

The chart passes them to the operator (``functions.scheduling``, ``builds.scheduling``,
``imagePullSecrets``, ``registry.credentials``); :func:`from_env` reads them from the
operator's environment as a mapping, so tests build them from plain dicts.

* **Pull Secrets**: a function pod (and a build Job) pulls with the namespace's registry
  credential Secret (unless credentials are off), the chart's default Secrets, then the
  Function's own ``spec.imagePullSecrets``, in that order, each once.
* **Placement**: node selector, tolerations, affinity, topology spread and priority class. A
  Function's ``spec.scheduling`` replaces the chart default field by field; builds take the
  chart's ``builds.scheduling`` only (where a build runs is the platform's business).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kfn.api import function


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where pods may run, in the shape of a Pod spec's fields."""

    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    affinity: Mapping[str, Any] | None = None
    topology_spread_constraints: Sequence[Mapping[str, Any]] = ()
    priority_class_name: str = ""

    @classmethod
    def parse(cls, doc: Mapping[str, Any] | None) -> Placement:
        """From the chart's ``scheduling`` value (camelCase keys, all optional)."""
        doc = doc or {}
        return cls(
            node_selector=dict(doc.get("nodeSelector") or {}),
            tolerations=tuple(doc.get("tolerations") or ()),
            affinity=doc.get("affinity") or None,
            topology_spread_constraints=tuple(doc.get("topologySpreadConstraints") or ()),
            priority_class_name=str(doc.get("priorityClassName") or ""),
        )

    def overridden_by(self, scheduling: function.Scheduling | None) -> Placement:
        """This default with each field the Function sets replaced by the Function's."""
        if scheduling is None:
            return self
        return Placement(
            node_selector=(
                scheduling.node_selector
                if scheduling.node_selector is not None
                else self.node_selector
            ),
            tolerations=(
                tuple(
                    t.model_dump(by_alias=True, exclude_none=True) for t in scheduling.tolerations
                )
                if scheduling.tolerations is not None
                else self.tolerations
            ),
            affinity=scheduling.affinity if scheduling.affinity is not None else self.affinity,
            topology_spread_constraints=(
                tuple(scheduling.topology_spread_constraints)
                if scheduling.topology_spread_constraints is not None
                else self.topology_spread_constraints
            ),
            priority_class_name=scheduling.priority_class_name or self.priority_class_name,
        )

    def pod_fields(self) -> dict[str, Any]:
        """The Pod spec fields to set (those with a value)."""
        fields: dict[str, Any] = {}
        if self.node_selector:
            fields["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            fields["tolerations"] = [dict(t) for t in self.tolerations]
        if self.affinity:
            fields["affinity"] = dict(self.affinity)
        if self.topology_spread_constraints:
            fields["topologySpreadConstraints"] = [
                dict(c) for c in self.topology_spread_constraints
            ]
        if self.priority_class_name:
            fields["priorityClassName"] = self.priority_class_name
        return fields


@dataclasses.dataclass(frozen=True)
class Platform:
    """Cluster-wide settings of function pods and build Jobs."""

    credentials_secret: str | None = None
    """The per-namespace registry credential Secret; None when the registry needs none."""
    pull_secrets: tuple[str, ...] = ()
    """The chart's default image pull Secrets, expected in every function namespace."""
    functions: Placement = dataclasses.field(default_factory=Placement)
    builds: Placement = dataclasses.field(default_factory=Placement)

    def default_pull_secrets(self) -> list[str]:
        """The Secrets every pod of a namespace pulls with (the namespace's registry credential,
        then the chart's), each once: all a warm pool's pods, which run a runtime image, use."""
        names = [self.credentials_secret] if self.credentials_secret else []
        return list(dict.fromkeys([*names, *self.pull_secrets]))

    def pull_secrets_for(self, fn: function.Function) -> list[str]:
        """The Secrets ``fn``'s pods pull with, in order, each once."""
        names = [*self.default_pull_secrets(), *(ref.name for ref in fn.spec.image_pull_secrets)]
        return list(dict.fromkeys(names))

    def image_pull_secrets(self, fn: function.Function) -> list[dict[str, str]]:
        """The Pod spec's ``imagePullSecrets`` for ``fn``."""
        return [{"name": name} for name in self.pull_secrets_for(fn)]


def from_env(env: Mapping[str, str]) -> Platform:
    """The platform settings the chart puts in the operator's environment.

    ``KFN_REGISTRY_CREDENTIALS`` (managed, shared, provided or none) and
    ``KFN_REGISTRY_SECRET_NAME`` decide the namespace credential; ``KFN_IMAGE_PULL_SECRETS``
    is a JSON list of names; ``KFN_FUNCTION_SCHEDULING`` and ``KFN_BUILD_SCHEDULING`` are JSON
    ``scheduling`` objects.
    """
    mode = env.get("KFN_REGISTRY_CREDENTIALS") or "none"
    secret = env.get("KFN_REGISTRY_SECRET_NAME") or "kfn-registry"
    return Platform(
        credentials_secret=None if mode == "none" else secret,
        pull_secrets=tuple(json.loads(env.get("KFN_IMAGE_PULL_SECRETS") or "[]")),
        functions=Placement.parse(json.loads(env.get("KFN_FUNCTION_SCHEDULING") or "{}")),
        builds=Placement.parse(json.loads(env.get("KFN_BUILD_SCHEDULING") or "{}")),
    )
