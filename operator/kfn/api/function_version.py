"""The ``FunctionVersion`` kind: an immutable record of what a Function ran.

The operator publishes one per deployed change (``spec.publish: Always``) or on request: the
image digest the build produced and the Function's configuration then, as ``template`` (a
Function spec whose source is that image). Its spec never changes (a transition rule on the
server); a version is deleted by retention (never while an alias routes to it) or with its
Function, which owns it. ``docs/design/versions.md`` has the whole design.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

import pydantic

from kfn.api import meta, toplevel
from kfn.api.function import HEX_SHA256_PATTERN, MAX_FUNCTION_NAME, FunctionSpec
from kfn.api.meta import Rule

KIND: Final = "FunctionVersion"
PLURAL: Final = "functionversions"


def object_name(function_name: str, version: int) -> str:
    """``<function>-v<N>``: the version's object name, and its Deployment's when it runs apart
    from ``$LATEST``."""
    return f"{function_name}-v{version}"


class FunctionVersionSpec(meta.Model):
    """What one version of a Function runs. Immutable."""

    function: str = pydantic.Field(
        max_length=MAX_FUNCTION_NAME,
        pattern=meta.DNS1035_LABEL_PATTERN,
        description="The Function this is a version of (in the same namespace).",
    )
    version: int = pydantic.Field(ge=1, description="The version's number.")
    config_hash: str = pydantic.Field(
        max_length=64,
        pattern=HEX_SHA256_PATTERN,
        description="SHA-256 of the template: two versions differ exactly when it does.",
    )
    source_hash: str | None = pydantic.Field(
        default=None,
        max_length=64,
        description="The source hash of the build that made the image (status.sourceHash of "
        "the Function then); absent for a prebuilt image.",
    )
    description: str | None = pydantic.Field(
        default=None, max_length=256, description="What changed, as Lambda's version description."
    )
    template: FunctionSpec = pydantic.Field(
        description="The Function's spec as it ran: source.image is the built image by digest; "
        "aliases and publishing settings are the Function's, not the version's, and are empty."
    )


class FunctionVersionStatus(toplevel.Status):
    """Whether the version runs, written by the operator."""

    conditions: list[meta.Condition] = toplevel.conditions_field(
        "Routed: True while an alias routes to the version (then it runs in a Deployment of its "
        "own, scaled from zero), its message naming the aliases; False otherwise."
    )


FUNCTION_VERSION_NAME_RULE: Final = toplevel.NameRule(
    max_length=MAX_FUNCTION_NAME,
    pattern=meta.DNS1035_LABEL_PATTERN,
    message="a FunctionVersion name is <function>-v<N>, a DNS-1035 label of at most 63 "
    "characters (it names the version's Deployment)",
)

IMMUTABLE: Final = Rule(
    cel="self == oldSelf",
    message="a FunctionVersion's spec cannot change: publish a new version instead",
)


class FunctionVersion(toplevel.Object):
    """A FunctionVersion as stored by the API server."""

    NAME_RULE: ClassVar[toplevel.NameRule] = FUNCTION_VERSION_NAME_RULE

    kind: Literal["FunctionVersion"] = KIND
    spec: FunctionVersionSpec
    status: FunctionVersionStatus | None = None
