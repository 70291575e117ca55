"""What every kfn kind has at its top: apiVersion, a metadata name rule, and a status base.

A kind's model is :class:`Object` plus its ``kind``, ``spec`` and ``status``; its status model is
:class:`Status` plus its own fields. The name rule is one value written for both sides, like every
rule in :mod:`kfn.api`: :meth:`NameRule.to_schema` is the CEL rule on the CRD's root (the
generator in :mod:`kfn.api.crdgen` writes it there), :meth:`NameRule.allows` its Python twin,
which :class:`Object` applies to ``metadata.name``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar, Literal

import pydantic

from kfn.api import meta


@dataclasses.dataclass(frozen=True)
class NameRule:
    """How objects of one kind may be named: at most ``max_length`` characters of ``pattern``.

    Kubernetes accepts longer names than kfn can use (a Function's name becomes a Service's), so
    the API server checks this rule and offline validation fails with the same ``message``.
    """

    max_length: int
    pattern: str
    message: str

    def allows(self, name: str) -> bool:
        return len(name) <= self.max_length and re.fullmatch(self.pattern, name) is not None

    def to_schema(self) -> dict[str, str]:
        """The rule for the CRD root's ``x-kubernetes-validations``."""
        return meta.Rule(
            cel=f"size(self.metadata.name) <= {self.max_length}"
            f" && self.metadata.name.matches(r'{self.pattern}')",
            message=self.message,
        ).to_schema()


class Object(pydantic.BaseModel):
    """A kfn object as stored by the API server; each kind adds ``kind``, ``spec``, ``status``.

    Frozen, and tolerant of fields it does not know (``managedFields`` and the like).
    """

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    NAME_RULE: ClassVar[NameRule]
    """The kind's rule for ``metadata.name``."""

    api_version: Literal["kfn.dev/v1alpha1"] = pydantic.Field(
        default="kfn.dev/v1alpha1", alias="apiVersion"
    )
    metadata: meta.ObjectMeta

    @pydantic.field_validator("metadata")
    @classmethod
    def _name_follows_the_kinds_rule(cls, value: meta.ObjectMeta) -> meta.ObjectMeta:
        if not cls.NAME_RULE.allows(value.name):
            raise ValueError(cls.NAME_RULE.message)
        return value


def conditions_field(description: str) -> Any:
    """``status.conditions`` of the standard shape, a map keyed by ``type``; ``description``
    names the kind's condition types."""
    return pydantic.Field(
        default_factory=list,
        max_length=16,
        description=description,
        json_schema_extra=meta.CONDITIONS_EXTRA,
    )


class Status(meta.StatusModel):
    """What every kind's status has: conditions and the generation they describe.

    A kind's status re-declares ``conditions`` with :func:`conditions_field` to name its
    condition types; the field keeps its place, first.
    """

    conditions: list[meta.Condition] = conditions_field("Conditions of the standard shape.")
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The generation of the spec the status describes."
    )
