"""Which invocation target a qualifier names: ``$LATEST``, a version, or an alias's choice.

A caller names a function with a qualifier as Lambda's do (``fn``, ``fn:$LATEST``, ``fn:3``,
``fn:live``; ``docs/design/versions.md``). Each target runs in a Deployment of its own and has
a :class:`~kfn.stats.FunctionKey` of its own: ``$LATEST`` is version ``""``, version N is
``"N"``. An alias names one route or two with weights: those of its entry in the Function's
``status.aliases`` when kfn moved it (a rollout), else those its ``spec.aliases`` entry asks
for (``version`` takes what ``additionalVersion`` leaves). One is chosen per request by
:func:`kfn.rollout.choose` with the draw the caller passes (``random.random()`` in the
activator, a fixed number in tests).

Pure: :func:`table` is built by the catalog from the watched Functions and FunctionVersions
after each change; :func:`resolve` runs per request that names a qualifier, and a request
without one (``$LATEST``) never gets here.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping

from kfn import rollout, stats
from kfn.api import function as function_api
from kfn.api import versioning

#: An alias's routes: (version number as text, percent), percents summing to 100.
Routes = tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Targets:
    """What one function's qualifiers may name."""

    #: The published versions that exist (FunctionVersions), as text.
    versions: frozenset[str] = frozenset()
    #: The versions that run (something routes to them): only these have pods.
    routed: frozenset[str] = frozenset()
    #: Each alias's routes.
    aliases: Mapping[str, Routes] = dataclasses.field(default_factory=dict)


#: Each function's targets, by its ``$LATEST`` key.
Table = Mapping[stats.FunctionKey, Targets]


@dataclasses.dataclass(frozen=True, slots=True)
class NotFound:
    """A qualifier naming nothing that runs; ``message`` says why, for the caller."""

    function: stats.FunctionKey
    qualifier: str
    message: str


def draw() -> float:
    """A request's draw among an alias's routes: a traffic split, no secret to guess."""
    return random.random()  # noqa: S311


def alias_routes(fn: function_api.Function) -> dict[str, Routes]:
    """Each alias's routes: from ``status.aliases`` when kfn wrote the alias's routing there,
    else from ``spec.aliases``. An alias the spec no longer has is gone, whatever the status
    still says."""
    moved = {a.name: a.routes for a in (fn.status.aliases if fn.status else None) or []}
    found: dict[str, Routes] = {}
    for alias in fn.spec.aliases:
        status_routes = moved.get(alias.name)
        if status_routes:
            found[alias.name] = tuple((str(r.version), r.weight) for r in status_routes)
            continue
        extra = alias.additional_version
        if extra is None or extra.weight == 0:
            found[alias.name] = ((str(alias.version), 100),)
        else:
            found[alias.name] = (
                (str(alias.version), 100 - extra.weight),
                (str(extra.version), extra.weight),
            )
    return found


def table(
    functions: Iterable[function_api.Function],
    versions: Mapping[stats.FunctionKey, Iterable[int]],
    routed: Mapping[stats.FunctionKey, Iterable[int]],
) -> dict[stats.FunctionKey, Targets]:
    """The targets of each Function; ``versions`` and ``routed`` give, by a function's key,
    its published version numbers and those that run."""
    found: dict[stats.FunctionKey, Targets] = {}
    for fn in functions:
        key = stats.FunctionKey(fn.metadata.namespace, fn.metadata.name)
        found[key] = Targets(
            versions=frozenset(str(n) for n in versions.get(key, ())),
            routed=frozenset(str(n) for n in routed.get(key, ())),
            aliases=alias_routes(fn),
        )
    return found


def resolve(
    targets: Table, function: stats.FunctionKey, qualifier: str, draw: float
) -> stats.FunctionKey | NotFound:
    """The target ``function`` (a ``$LATEST`` key) with ``qualifier`` names for one request;
    ``draw`` is uniform in [0, 1) and chooses among an alias's routes."""
    if qualifier in ("", versioning.LATEST):
        return function
    found = targets.get(function)
    if found is None:
        return NotFound(function, qualifier, f"Function not found: {function}:{qualifier}")
    if versioning.is_version_number(qualifier):
        return _version(function, found, qualifier, qualifier)
    routes = found.aliases.get(qualifier)
    if routes is None:
        return NotFound(
            function,
            qualifier,
            f"Function not found: {function}:{qualifier} (no such version or alias)",
        )
    return _version(function, found, rollout.choose(routes, draw), qualifier)


def _version(
    function: stats.FunctionKey, found: Targets, version: str, qualifier: str
) -> stats.FunctionKey | NotFound:
    if version not in found.versions:
        via = "" if version == qualifier else f" (alias {qualifier} routes to version {version})"
        return NotFound(function, qualifier, f"Function not found: {function}:{version}{via}")
    if version not in found.routed:
        return NotFound(
            function,
            qualifier,
            f"Function not found: {function}:{version} (a version runs only while an alias "
            "routes to it)",
        )
    return stats.FunctionKey(function.namespace, function.name, version)
