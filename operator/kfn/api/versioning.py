"""A Function's versions and aliases: what callers may name, and how an alias splits traffic.

An alias maps a name to a published version and, as Lambda's ``RoutingConfig`` does, an optional
second version with a weight; or it moves to a new version in steps (a progressive rollout) and
goes back by itself when the new version does worse. The spec says what the user asked for; the
routing kfn moves during a rollout is written to the status (:class:`AliasStatus`), never to the
spec. ``docs/design/versions.md`` has the whole design.
"""

from __future__ import annotations

import enum
import itertools
import re
from typing import Annotated, Final, Literal

import pydantic

from kfn.api import meta
from kfn.api.meta import DurationRange, Rule

LATEST: Final = "$LATEST"
"""The qualifier of the newest code and configuration, as Lambda's; the default."""

MAX_ALIASES: Final = 10
"""Aliases one Function may have."""
MAX_VERSION_RETENTION: Final = 100
DEFAULT_VERSION_RETENTION: Final = 10
MAX_ROLLOUT_STEPS: Final = 10

ALIAS_NAME_PATTERN: Final = r"^[a-zA-Z0-9_-]+$"
"""Lambda's alias names: letters, digits, ``-`` and ``_``; a rule refuses all digits, so an
alias is never mistaken for a version number."""

_ALIAS_CHARACTER: Final = ALIAS_NAME_PATTERN.removeprefix("^").removesuffix("+$")
QUALIFIER_PATTERN: Final = rf"^(\$LATEST|[1-9][0-9]*|[0-9]*[a-zA-Z_-]{_ALIAS_CHARACTER}*)$"
"""What a reference may name a Function's target by: ``$LATEST``, a version number (no leading
zero), or an alias name (:data:`ALIAS_NAME_PATTERN`, not all digits)."""


class Publish(enum.StrEnum):
    """When kfn publishes a version."""

    ALWAYS = "Always"
    ON_REQUEST = "OnRequest"


PUBLISH_ANNOTATION: Final = "kfn.dev/publish"
"""With ``publish: OnRequest``, a change of this annotation's value publishes a version. Any
new value asks; ``kubectl kfn publish`` writes the time, then the version's description."""


def publish_description(value: str) -> str | None:
    """The description a publish request's value carries after its first space, if any."""
    _, _, description = value.strip().partition(" ")
    return description.strip() or None


def _strictly_increasing(steps: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(steps))


class Rollout(meta.Model):
    """Moving an alias to a new version in steps, rolled back when the new version does worse."""

    steps: list[Annotated[int, pydantic.Field(ge=1, le=99)]] = pydantic.Field(
        default_factory=lambda: [10, 50],
        min_length=1,
        max_length=MAX_ROLLOUT_STEPS,
        description="Percent of the alias's requests sent to the new version at each step, "
        "strictly increasing, each 1 to 99; after the last step the new version takes 100 %.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    interval: Annotated[meta.Duration, DurationRange("10s", "24h")] = pydantic.Field(
        default="5m",
        description="How long each step lasts before the next (a duration such as 5m; 10s to "
        "24h). A step is judged on the last interval of both versions' invocations.",
    )
    max_error_rate_increase: int = pydantic.Field(
        default=5,
        ge=0,
        le=100,
        description="Percentage points by which the new version's error rate may exceed the old "
        "one's; beyond it the alias goes back to the old version at once.",
    )
    max_duration_increase: int = pydantic.Field(
        default=50,
        ge=0,
        le=1000,
        description="Percent by which the new version's p99 duration may exceed the old one's; "
        "beyond it the alias goes back to the old version at once.",
    )
    min_invocations: int = pydantic.Field(
        default=20,
        ge=1,
        le=100_000,
        description="Invocations of the new version a step needs before it is judged; with "
        "fewer the step waits (a quiet alias does not move on without evidence).",
    )

    __rules__ = (
        Rule(
            cel="self.steps.isSorted()",
            message="rollout steps must be strictly increasing percentages (for example [10, 50])",
            check=lambda r: _strictly_increasing(r.steps),
        ),
    )


class AdditionalVersion(meta.Model):
    """The second version of a weighted alias (Lambda's ``AdditionalVersionWeights``)."""

    version: int = pydantic.Field(ge=1, description="The version that takes weight percent.")
    weight: int = pydantic.Field(
        ge=0,
        le=100,
        description="Percent of the alias's requests sent to this version, chosen per request.",
    )


class Alias(meta.Model):
    """A name callers use (``function:name``) for a version, or two with weights."""

    name: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=ALIAS_NAME_PATTERN,
        description="The alias's name: letters, digits, '-' and '_', not all digits (a number "
        "names a version), at most 63 characters.",
    )
    version: int = pydantic.Field(
        ge=1,
        description="The published version the alias points at (status.versions lists them). "
        "With a rollout, changing it moves the alias there in steps.",
    )
    additional_version: AdditionalVersion | None = pydantic.Field(
        default=None,
        description="A second version taking a fixed share of the requests.",
    )
    rollout: Rollout | None = pydantic.Field(
        default=None,
        description="Move to a new version in steps, rolling back by itself on errors or "
        "latency (not with additionalVersion, whose share a rollout would set).",
    )

    __rules__ = (
        Rule(
            cel="!self.name.matches('^[0-9]+$')",
            message="an alias name cannot be all digits: a number names a version",
            check=lambda a: re.fullmatch(r"[0-9]+", a.name) is None,
        ),
        Rule(
            cel="!has(self.additionalVersion) || self.additionalVersion.version != self.version",
            message="additionalVersion must name another version than version",
            check=lambda a: (
                a.additional_version is None or a.additional_version.version != a.version
            ),
        ),
        Rule(
            cel="!has(self.additionalVersion) || !has(self.rollout)",
            message="an alias takes either additionalVersion (a fixed split) or rollout "
            "(a split kfn moves), not both",
            check=lambda a: a.additional_version is None or a.rollout is None,
        ),
    )


def is_version_number(qualifier: str) -> bool:
    return re.fullmatch(r"[1-9][0-9]{0,9}", qualifier) is not None


def split_qualifier(reference: str) -> tuple[str, str]:
    """``name`` and its qualifier from ``name``, ``name:3``, ``name:live`` or ``name:$LATEST``;
    no qualifier means ``$LATEST``."""
    name, _, qualifier = reference.partition(":")
    return name, qualifier or LATEST


# --- status ----------------------------------------------------------------------------------


class VersionRecord(meta.StatusModel):
    """One published version, as the Function's status lists it."""

    version: int = pydantic.Field(ge=1, description="The version's number.")
    image: str = pydantic.Field(max_length=512, description="Its image, referenced by digest.")
    config_hash: str = pydantic.Field(
        max_length=64,
        pattern=r"^[a-f0-9]{64}$",
        description="SHA-256 of the configuration it runs with (what makes two versions differ).",
    )
    published: str = pydantic.Field(max_length=32, description="When it was published (RFC 3339).")


class Route(meta.StatusModel):
    """A version and the percent of an alias's requests it takes."""

    version: int = pydantic.Field(ge=1, description="The version.")
    weight: int = pydantic.Field(ge=0, le=100, description="Percent of the requests.")


RolloutOutcome = Literal["Progressing", "Promoted", "RolledBack"]


class RolloutStatus(meta.StatusModel):
    """Where an alias's rollout stands."""

    from_version: int = pydantic.Field(ge=1, alias="from", description="The old version.")
    to_version: int = pydantic.Field(ge=1, alias="to", description="The new version.")
    step: int = pydantic.Field(ge=0, description="Index of the current step in rollout.steps.")
    step_started: str = pydantic.Field(
        max_length=32, description="When the current step began (RFC 3339)."
    )
    outcome: RolloutOutcome = pydantic.Field(description="Progressing, Promoted or RolledBack.")
    message: str = pydantic.Field(
        default="", max_length=1024, description="What was decided last, and why."
    )


class AliasStatus(meta.StatusModel):
    """How an alias routes now."""

    name: str = pydantic.Field(max_length=63, description="The alias.")
    routes: list[Route] = pydantic.Field(
        max_length=2, description="The versions serving the alias and their weights."
    )
    rollout: RolloutStatus | None = pydantic.Field(
        default=None, description="The rollout moving the alias, if one has run."
    )
