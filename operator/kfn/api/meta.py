"""Pieces shared by both kinds: object metadata, references, durations, quantities, conditions.

Durations are strings in Go's ``time.ParseDuration`` spelling (``30s``, ``5m``, ``1h30m``,
``500ms``) because that is what the API server's CEL ``duration()`` understands, so the same value
is checked by the OpenAPI pattern, by CEL bounds on the server, and by :func:`parse_duration` here.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, ClassVar, Final, Literal

import pydantic
import pydantic.fields
import pydantic_core
from pydantic import alias_generators

GROUP: Final = "kfn.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# --- names -----------------------------------------------------------------------------------

DNS1035_LABEL_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1035 label: what a Service name must be."""

DNS1123_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

DNS1123_SUBDOMAIN_PATTERN: Final = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
"""Names of Secrets, ConfigMaps and ServiceAccounts."""

ObjectName = Annotated[
    str,
    pydantic.Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description="Name of an object in the same namespace.",
    ),
]

# --- durations -------------------------------------------------------------------------------

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
"""Go duration spelling restricted to ms/s/m/h and non-negative values."""

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_MICROS: Final = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}


def duration_micros(text: str) -> int:
    """Microseconds of a duration, however long; the comparisons of the rules use this.

    Raises ``ValueError`` for anything the OpenAPI pattern would reject.
    """
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h30m or 500ms")
    micros = 0
    for number, unit in _DURATION_PART.findall(text):
        whole, _, fraction = number.partition(".")
        scale = _UNIT_MICROS[unit]
        micros += int(whole) * scale
        if fraction:
            micros += int(fraction) * scale // 10 ** len(fraction)
    return micros


def parse_duration(text: str) -> datetime.timedelta:
    """Parse a duration as the API server's CEL ``duration()`` does, for the units we allow.

    Raises ``ValueError`` for anything the OpenAPI pattern would reject, and for durations too
    long for a ``timedelta`` (the rules' bounds refuse those long before).
    """
    micros = duration_micros(text)
    try:
        return datetime.timedelta(microseconds=micros)
    except OverflowError as exc:
        raise ValueError(f"{text!r} is longer than any duration kfn accepts") from exc


Duration = Annotated[str, pydantic.Field(max_length=32, pattern=DURATION_PATTERN)]
"""A duration string; bound it with :class:`DurationRange`."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One validation rule, written for the API server (CEL) and for Python side by side.

    ``check`` receives the validated value (a model instance for model rules) and returns whether
    it is valid. Transition rules (those using ``oldSelf``) have no ``check``: they need the stored
    object, which only the API server has.
    """

    cel: str
    message: str
    check: Callable[[Any], bool] | None = None
    field_path: str | None = None

    def to_schema(self) -> dict[str, str]:
        rule = {"rule": self.cel, "message": self.message}  # the order kubectl shows
        if self.field_path is not None:
            rule["fieldPath"] = self.field_path
        return rule


def add_rules(schema: dict[str, Any], rules: Iterable[Rule]) -> None:
    """Append rules to a JSON schema node's ``x-kubernetes-validations``."""
    validations = schema.setdefault("x-kubernetes-validations", [])
    validations.extend(rule.to_schema() for rule in rules)


@dataclasses.dataclass(frozen=True)
class Cel:
    """``Annotated`` metadata attaching rules to a field's type (strings, lists, ints)."""

    rules: tuple[Rule, ...]

    def __init__(self, *rules: Rule) -> None:
        object.__setattr__(self, "rules", rules)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> pydantic_core.CoreSchema:
        schema = handler(source)
        checks = [rule for rule in self.rules if rule.check is not None]
        if not checks:
            return schema

        def validate(value: Any) -> Any:
            for rule in checks:
                assert rule.check is not None
                if not rule.check(value):
                    raise ValueError(rule.message)
            return value

        return pydantic_core.core_schema.no_info_after_validator_function(validate, schema)

    def __get_pydantic_json_schema__(
        self, core_schema: pydantic_core.CoreSchema, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        schema = handler.resolve_ref_schema(handler(core_schema))
        add_rules(schema, self.rules)
        return schema


def DurationRange(minimum: str | None = None, maximum: str | None = None) -> Cel:  # noqa: N802
    """Bounds of a duration, checked by CEL ``duration()`` on the server and here alike."""
    rules: list[Rule] = []
    if minimum is not None:
        rules.append(
            Rule(
                cel=f"duration(self) >= duration('{minimum}')",
                message=f"must be at least {minimum}",
                check=_compare_duration(duration_micros(minimum), at_least=True),
            )
        )
    if maximum is not None:
        rules.append(
            Rule(
                cel=f"duration(self) <= duration('{maximum}')",
                message=f"must be at most {maximum}",
                check=_compare_duration(duration_micros(maximum), at_least=False),
            )
        )
    return Cel(*rules)


def _compare_duration(bound: int, *, at_least: bool) -> Callable[[str], bool]:
    """Compares in microseconds, so a duration too long for a ``timedelta`` is merely too long."""

    def check(value: str) -> bool:
        parsed = duration_micros(value)
        return parsed >= bound if at_least else parsed <= bound

    return check


# --- quantities ------------------------------------------------------------------------------

CPU_PATTERN: Final = r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$"
"""CPU as millicores (``250m``) or cores (``1``, ``0.5``)."""

MEMORY_PATTERN: Final = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"
"""Memory as bytes with an optional binary or decimal suffix (``128Mi``, ``1G``)."""

_MEMORY_FACTORS: Final = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_memory_bytes(text: str) -> int:
    """Bytes of a memory quantity in the spelling :data:`MEMORY_PATTERN` allows."""
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?", text)
    if match is None:
        raise ValueError(f"{text!r} is not a memory quantity such as 128Mi or 1Gi")
    return int(match.group(1)) * _MEMORY_FACTORS[match.group(2) or ""]


def parse_cpu_millis(text: str) -> int:
    """Millicores of a CPU quantity in the spelling :data:`CPU_PATTERN` allows."""
    if not re.fullmatch(CPU_PATTERN, text):
        raise ValueError(f"{text!r} is not a CPU quantity such as 250m or 1")
    if text.endswith("m"):
        return int(text[:-1])
    whole, _, fraction = text.partition(".")
    return int(whole) * 1000 + (int(fraction.ljust(3, "0")) if fraction else 0)


# --- shared models ---------------------------------------------------------------------------


class Model(pydantic.BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields rejected, rules attached.

    The API server prunes unknown fields before the operator sees an object, so forbidding them
    here only matters for manifests checked offline, where a typo should be loud.

    ``__rules__`` lists the object-level rules of a model. Each becomes an entry of the schema's
    ``x-kubernetes-validations`` and, when it has a Python ``check``, a pydantic validation with the
    same message, so a manifest fails the same way offline as on the server.
    """

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @pydantic.model_validator(mode="after")
    def _check_rules(self) -> Model:
        for name, field in type(self).model_fields.items():
            _check_list_type(field, getattr(self, name))
        for rule in type(self).__rules__:
            if rule.check is not None and not rule.check(self):
                raise ValueError(rule.message)
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: pydantic_core.CoreSchema, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        if cls.__rules__:
            target["x-kubernetes-validations"] = [rule.to_schema() for rule in cls.__rules__]
        return schema


def _check_list_type(field: pydantic.fields.FieldInfo, value: Any) -> None:
    """Duplicate keys of ``list-type: map`` and values of ``list-type: set``, as the server does."""
    extra = field.json_schema_extra
    if not isinstance(extra, dict) or not isinstance(value, list):
        return
    list_type = extra.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = extra["x-kubernetes-list-map-keys"]
        assert isinstance(keys, list)
        seen = [tuple(getattr(item, str(key)) for key in keys) for item in value]
    elif list_type == "set":
        seen = list(value)
    else:
        return
    duplicates = sorted({str(item) for item in seen if seen.count(item) > 1})
    if duplicates:
        raise ValueError(f"Duplicate value: {', '.join(duplicates)}")


class StatusModel(pydantic.BaseModel):
    """Base of status models: tolerant of fields written by a newer operator."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="ignore",
    )


class LocalObjectReference(Model):
    """A reference to an object by name in the object's own namespace."""

    name: ObjectName


class ObjectMeta(pydantic.BaseModel):
    """The part of ``metadata`` that kfn reads; everything else is ignored."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    name: str = pydantic.Field(description="Name of the object.")
    namespace: str = pydantic.Field(default="default", description="Namespace of the object.")
    uid: str | None = pydantic.Field(
        default=None, description="UID set by the API server; needed for owner references."
    )
    generation: int | None = pydantic.Field(
        default=None, description="Generation of the spec, set by the API server."
    )
    labels: dict[str, str] = pydantic.Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = pydantic.Field(default_factory=dict, description="Annotations.")
    creation_timestamp: str | None = pydantic.Field(
        default=None, description="When the object was created (RFC 3339), set by the server."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """One entry of ``status.conditions`` in the shape of ``metav1.Condition``."""

    type: str = pydantic.Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Type of the condition in CamelCase, e.g. Ready.",
    )
    status: ConditionStatus = pydantic.Field(description="True, False or Unknown.")
    reason: str = pydantic.Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = pydantic.Field(
        default="", max_length=32768, description="Human-readable details of the last transition."
    )
    last_transition_time: datetime.datetime = pydantic.Field(
        description="When the status last changed (not when the condition was last checked)."
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The spec generation the condition was computed from."
    )

    @pydantic.field_serializer("last_transition_time")
    def _rfc3339(self, value: datetime.datetime) -> str:
        """Write whole-second UTC times with a ``Z``, as Kubernetes itself does."""
        return format_time(value)


def format_time(value: datetime.datetime) -> str:
    """RFC 3339 in the form the API server writes (``2024-05-01T12:00:00Z``)."""
    if value.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


CONDITIONS_EXTRA: Final[dict[str, Any]] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
