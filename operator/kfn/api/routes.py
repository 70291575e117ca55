"""Routes belong to namespaces: which HTTP Triggers own their routes, and why the others don't.

One pure decision, :func:`decide`, shared by the two components that must agree on it: the
operator writes each HTTP Trigger's ``Ready`` from it, and the activator routes only what it
grants, so a refused Trigger gets no traffic even before the operator has said so. It lives in
:mod:`kfn.api` because it is part of what ``spec.http`` means, and both components already
read the API models.

Each Trigger is judged in creation order (``metadata.creationTimestamp``, ties broken by
namespace, then name), against the Triggers granted before it, so neither a restart of either
component nor the order in which a watch lists objects changes the outcome:

1. A host the cluster admin named a *default host* (the activator's own Service names, and
   the names clients reach it by) is the shared default host: no Trigger may name it.
2. A host matching a pattern the cluster admin assigned (the chart's
   ``routes.hostAssignments``) may be named only by Triggers of the namespaces it is assigned
   to, whoever came first. The most specific pattern decides: an exact name over a wildcard,
   a longer wildcard over a shorter.
3. Any other host belongs, with every path, to the namespace of the first Trigger naming it.
4. On a host several namespaces share (the default host, which Triggers without ``host``
   serve, and a host assigned to several namespaces) a path prefix belongs, with every path
   below it on whole segments, to the first namespace that claims it: another namespace's
   Trigger on that prefix or under it is refused.
5. A namespace's own Triggers may share and nest prefixes. Two of them on the same host and
   prefix whose methods overlap ask for one route twice: the older keeps it.

A *shorter* prefix claimed later by another namespace (``/api`` after another namespace's
``/api/orders``) is granted, but it takes only the paths nobody held before it: the earlier
claim keeps its whole subtree, because the activator answers a path from the namespace of the
longest prefix holding it and from no other (not even for a method that namespace does not
route). Refusing it instead would let any namespace deny every other one the catch-all ``/``,
or any broad prefix, by claiming one deep path first; allowing it without that fence would
hand the earlier namespace's unrouted methods to the later one. Either way a namespace's
traffic would depend on what others did after it; this way it never does. When a Trigger
goes, the next claimant by creation time takes over what it held.

A Function URL (``Function.spec.url``, :func:`url_claim`) is a claim too: its host (from the
cluster's host template, :func:`kfn.api.web.url_host`) with every path and method, judged
before every Trigger, since a host made of its function's and namespace's names is that
namespace's by construction: no Trigger of another namespace takes it by coming first, and
one naming it is refused with a message naming the Function URL. A Trigger of the same
namespace may route a longer path prefix on it. Two Function URLs share a host only through
the template (``{function}-{namespace}`` gives ``a-b`` in ``c`` and ``a`` in ``b-c`` one
name): the older keeps it. A claim's :attr:`Claim.kind` keeps a Function URL's key
(:class:`FunctionUrlKey`) apart from a Trigger's of the same name.

A refusal names the Trigger or Function URL holding the route (or the admin's rule) and what
to do, in words a user reads in ``kubectl get trigger`` (or on the Function).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Literal, NamedTuple

from kfn.api import function as function_api
from kfn.api import meta, web
from kfn.api import trigger as trigger_api


class FunctionUrlKey(NamedTuple):
    """A Function URL's claim: its Function's namespace and name, and a third field so that it
    never equals the key of a Trigger of the same name (a Trigger's key is a pair)."""

    namespace: str
    function: str
    kind: Literal["FunctionUrl"] = "FunctionUrl"


Key = tuple[str, str] | FunctionUrlKey
"""Whose claim: a Trigger's namespace and name, or a :class:`FunctionUrlKey`."""

ClaimKind = Literal["Trigger", "FunctionUrl"]
TRIGGER: Final = "Trigger"
FUNCTION_URL: Final = "FunctionUrl"

DEFAULT_HOST: Final = ""
"""The host of a Trigger without ``host``: the default host, which every namespace shares."""

WILDCARD: Final = "*."
HOST_PATTERN_PATTERN: Final = r"^(\*\.)?" + trigger_api.HOST_PATTERN.removeprefix("^")
"""A host an admin may assign: a Trigger's host, or ``*.`` and one (every host below it)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """What one HTTP Trigger or Function URL asks for, with what decides which came first."""

    namespace: str
    name: str
    """The Trigger's name, or the Function's for a Function URL."""
    created: str
    """``metadata.creationTimestamp``: RFC 3339 in UTC, so its text sorts by time."""
    host: str
    """The Trigger's ``host`` (:data:`DEFAULT_HOST` when it names none), or the Function
    URL's host."""
    path_prefix: str
    methods: frozenset[str] = frozenset()
    kind: ClaimKind = TRIGGER

    @property
    def key(self) -> Key:
        if self.kind == FUNCTION_URL:
            return FunctionUrlKey(self.namespace, self.name)
        return self.namespace, self.name

    @property
    def order(self) -> tuple[bool, str, str, str]:
        """Function URLs first (a Function URL's host is its namespace's by construction, so
        no Trigger may take it by coming first), then older first; claims created in the
        same second by namespace, then name."""
        return self.kind != FUNCTION_URL, self.created, self.namespace, self.name

    @property
    def described(self) -> str:
        """Who claims, as a user reads it: ``Trigger ns/name`` or ``the Function URL of
        Function ns/name``."""
        if self.kind == FUNCTION_URL:
            return f"the Function URL of Function {self.namespace}/{self.name}"
        return f"Trigger {self.namespace}/{self.name}"

    @property
    def prefix(self) -> str:
        """The prefix as it is matched: whole segments, no trailing '/' (so '/' is '')."""
        return self.path_prefix.rstrip("/")


def claim(trigger: trigger_api.Trigger, created: str) -> Claim | None:
    """The route an HTTP Trigger asks for; None for the other kinds."""
    http = trigger.spec.http
    if http is None:
        return None
    return Claim(
        namespace=trigger.metadata.namespace,
        name=trigger.metadata.name,
        created=created,
        host=http.host or DEFAULT_HOST,
        path_prefix=http.path_prefix,
        methods=frozenset(http.methods),
    )


def url_claim(
    function: function_api.Function, created: str, template: str, domain: str
) -> Claim | None:
    """The route a Function URL asks for: its host (:func:`kfn.api.web.url_host`), every path
    and method. None when the Function asks for no URL, when no ``domain`` is configured
    (Function URLs are not served), or when its host would not be a valid DNS name (a long
    name in a long namespace: the operator says so on the Function)."""
    if function.spec.url is None or not domain:
        return None
    namespace, name = function.metadata.namespace, function.metadata.name
    host = web.url_host(template, function=name, namespace=namespace, domain=domain)
    if host is None:
        return None
    return Claim(
        namespace=namespace,
        name=name,
        created=created,
        host=host,
        path_prefix="/",
        kind=FUNCTION_URL,
    )


# --- the cluster admin's word on hosts --------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Assignment:
    """A host pattern and the namespaces the cluster admin assigned it to."""

    pattern: str
    """``api.example.com`` (that host) or ``*.example.com`` (every host below example.com,
    however deep, but not example.com itself: the Gateway API's wildcard)."""
    namespaces: frozenset[str]

    def matches(self, host: str) -> bool:
        if self.pattern.startswith(WILDCARD):
            return host.endswith(self.pattern[1:])
        return host == self.pattern

    @property
    def specificity(self) -> tuple[bool, int]:
        """Exact names first, then the longer wildcard."""
        return not self.pattern.startswith(WILDCARD), len(self.pattern)


@dataclasses.dataclass(frozen=True)
class HostPolicy:
    """Which hosts the cluster admin assigned to namespaces, and which are the default host."""

    assignments: tuple[Assignment, ...] = ()
    """Most specific first (:meth:`Assignment.specificity`)."""
    default_hosts: frozenset[str] = frozenset()

    def assigned(self, host: str) -> Assignment | None:
        """The most specific assignment matching ``host``, if any."""
        return next((a for a in self.assignments if a.matches(host)), None)

    def allows(self, host: str) -> frozenset[str] | None:
        """The namespaces the admin lets use ``host``; None where the admin said nothing."""
        assignment = self.assigned(host)
        return None if assignment is None else assignment.namespaces


OPEN: Final = HostPolicy()
"""No host assigned and no default host named: first claims decide everything."""


def policy(
    assignments: Mapping[str, Iterable[str]], default_hosts: Iterable[str] = ()
) -> HostPolicy:
    """The policy of the chart's ``routes`` values; ``ValueError`` names what is malformed."""
    namespaces: dict[str, set[str]] = {}
    for namespace, patterns in assignments.items():
        if re.fullmatch(meta.DNS1123_LABEL_PATTERN, namespace) is None or len(namespace) > 63:
            raise ValueError(f"host assignments: {namespace!r} is not a namespace name")
        if isinstance(patterns, str):
            raise ValueError(f"host assignments: {namespace} needs a list of host patterns")
        for pattern in patterns:
            if re.fullmatch(HOST_PATTERN_PATTERN, pattern) is None or len(pattern) > 253:
                raise ValueError(
                    f"host assignments: {pattern!r} of {namespace} is neither a lower-case "
                    "host name nor '*.' and one"
                )
            namespaces.setdefault(pattern, set()).add(namespace)
    defaults = frozenset(default_hosts)
    for host in sorted(defaults):
        if re.fullmatch(trigger_api.HOST_PATTERN, host) is None or len(host) > 253:
            raise ValueError(f"default hosts: {host!r} is not a lower-case host name")
        if host in namespaces:
            raise ValueError(f"{host} is both a default host and assigned to namespaces")
    ordered = sorted(
        (Assignment(pattern, frozenset(names)) for pattern, names in namespaces.items()),
        key=lambda a: (a.specificity, a.pattern),
        reverse=True,
    )
    return HostPolicy(tuple(ordered), defaults)


def policy_from_json(text: str) -> HostPolicy:
    """The policy from the JSON the chart gives the operator and the activator alike:
    ``{"hostAssignments": {namespace: [pattern, ...]}, "defaultHosts": [host, ...]}``, its
    ``routes`` values with the activator's own names added; empty means :data:`OPEN`."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ValueError(f"the host policy must be JSON: {exc}") from exc
    if not isinstance(value, dict) or set(value) - {"hostAssignments", "defaultHosts"}:
        raise ValueError("the host policy is a JSON object of hostAssignments and defaultHosts")
    by_namespace = value.get("hostAssignments") or {}
    defaults = value.get("defaultHosts") or []
    if not isinstance(by_namespace, dict) or not isinstance(defaults, list):
        raise ValueError(
            "hostAssignments is a JSON object (namespace: [host patterns]) and defaultHosts "
            "a JSON list of host names"
        )
    if not all(isinstance(p, list) for p in by_namespace.values()):
        raise ValueError("host assignments: every namespace needs a list of host patterns")
    return policy(by_namespace, defaults)


# --- the decision ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a Trigger gets no traffic: what holds its route, and what the user can do."""

    holder: Key | None
    """The Trigger or Function URL holding the route; None when the admin's host policy
    refuses it."""
    message: str


@dataclasses.dataclass(frozen=True)
class Ownership:
    """The outcome of :func:`decide`."""

    granted: tuple[Claim, ...]
    """The routes to serve in :attr:`Claim.order`: Function URLs, then Triggers, oldest first."""
    refused: Mapping[Key, Refusal]
    policy: HostPolicy
    claimed_hosts: Mapping[str, str]
    """Hosts no admin rule covers, and the namespace that named each first."""

    def answering(self, host: str) -> frozenset[str] | None:
        """The namespaces whose routes may answer a request for ``host`` (lower case, no
        port), default-host routes included; None for a host nobody owns: every namespace's
        default-host routes answer there.

        A host is its owners' alone: a request for it reaches no other namespace's function,
        not even through a route for the default host (a browser sends the host's cookies).
        """
        if host in self.policy.default_hosts:
            return None
        allowed = self.policy.allows(host)
        if allowed is not None:
            return allowed
        owner = self.claimed_hosts.get(host)
        return None if owner is None else frozenset((owner,))


def decide(claims: Iterable[Claim], host_policy: HostPolicy = OPEN) -> Ownership:
    """Which claims own their routes and why each other one is refused (the module's rule)."""
    granted: list[Claim] = []
    refused: dict[Key, Refusal] = {}
    first_on_host: dict[str, Claim] = {}
    at: dict[tuple[str, str], list[Claim]] = {}
    for c in sorted(claims, key=lambda c: c.order):
        refusal = _refusal(c, host_policy, first_on_host, at)
        if refusal is not None:
            refused[c.key] = refusal
            continue
        granted.append(c)
        if c.host and host_policy.allows(c.host) is None:
            first_on_host.setdefault(c.host, c)
        at.setdefault((c.host, c.prefix), []).append(c)
    return Ownership(
        granted=tuple(granted),
        refused=refused,
        policy=host_policy,
        claimed_hosts={host: c.namespace for host, c in first_on_host.items()},
    )


def _refusal(
    c: Claim,
    host_policy: HostPolicy,
    first_on_host: Mapping[str, Claim],
    at: Mapping[tuple[str, str], list[Claim]],
) -> Refusal | None:
    shared = c.host == DEFAULT_HOST
    if c.host in host_policy.default_hosts:
        return Refusal(None, _default_host(c))
    assignment = host_policy.assigned(c.host) if c.host else None
    if assignment is not None:
        if c.namespace not in assignment.namespaces:
            return Refusal(None, _assigned_elsewhere(c, assignment))
        shared = len(assignment.namespaces) > 1
    elif c.host:
        first = first_on_host.get(c.host)
        if first is not None and first.namespace != c.namespace:
            return Refusal(first.key, _host_taken(c, first))
    if shared:
        for prefix in _ancestors(c.prefix):
            others = (h for h in at.get((c.host, prefix), ()) if h.namespace != c.namespace)
            holder = next(others, None)
            if holder is not None:
                return Refusal(holder.key, _prefix_taken(c, holder))
    for holder in at.get((c.host, c.prefix), ()):
        if not holder.methods or not c.methods or holder.methods & c.methods:
            return Refusal(holder.key, _same_route(c, holder))
    return None


def _ancestors(prefix: str) -> Iterator[str]:
    """The prefix itself, then each shorter one on whole segments, down to '' (every path)."""
    while True:
        yield prefix
        if not prefix:
            return
        prefix = prefix.rsplit("/", 1)[0]


def _where(host: str) -> str:
    return "the default host (Triggers without a host)" if host == DEFAULT_HOST else f"host {host}"


def _default_host(c: Claim) -> str:
    if c.kind == FUNCTION_URL:
        return (
            f"the Function URL host {c.host} is the shared default host (the activator's own "
            "name, or one the cluster admin listed in routes.defaultHosts), which no route may "
            "claim. Ask the cluster admin to change the Function URL domain or host template"
        )
    return (
        f"host {c.host} is the shared default host (the activator's own name, or one the "
        "cluster admin listed in routes.defaultHosts), where Triggers of every namespace "
        "serve their path prefixes; no Trigger may claim it. Remove spec.http.host to serve "
        "on it, or use a host of this namespace's own"
    )


def _assigned_elsewhere(c: Claim, assignment: Assignment) -> str:
    owners = ", ".join(sorted(assignment.namespaces))
    noun = "namespace" if len(assignment.namespaces) == 1 else "namespaces"
    assigned = (
        f"host {c.host} is assigned by the cluster admin to {noun} {owners} (pattern "
        f"{assignment.pattern}), not to {c.namespace}."
    )
    if c.kind == FUNCTION_URL:
        return (
            f"the Function URL's {assigned} Ask the cluster admin to keep the Function URL "
            "domain out of routes.hostAssignments"
        )
    return (
        f"{assigned} Use a host assigned to this namespace or one nobody uses yet, or ask the "
        "cluster admin to assign this host here"
    )


def _host_taken(c: Claim, first: Claim) -> str:
    if first.kind == FUNCTION_URL and c.kind == FUNCTION_URL:
        return (
            f"host {c.host} is also the Function URL host of Function {first.namespace}/"
            f"{first.name}, which is older and keeps it: the cluster's Function URL host "
            "template gives both functions the same host. Rename this function, or ask the "
            "cluster admin for a host template that keeps the function and namespace apart "
            "(such as {function}.{namespace}.{domain})"
        )
    if first.kind == FUNCTION_URL:
        return (
            f"host {c.host} is the host of {first.described}: a Function URL's host "
            f"belongs, with every path, to its function's namespace ({first.namespace}). "
            "Use another host"
        )
    return (
        f"host {c.host} belongs to namespace {first.namespace}: {first.described} used it "
        "first, and a host belongs with every path to the first namespace that uses it. Use "
        f"another host, or ask the cluster admin to assign {c.host} to this namespace (or to "
        "both, to share it by path prefix)"
    )


def _prefix_taken(c: Claim, holder: Claim) -> str:
    theirs = holder.path_prefix
    instead = "Use" if not holder.prefix else f"Use a prefix outside {theirs}, or"
    return (
        f"path prefix {c.path_prefix} on {_where(c.host)} belongs to namespace "
        f"{holder.namespace}: {holder.described} claimed {theirs} first, and a path prefix "
        "belongs, with every path below it, to the first namespace that claims it. "
        f"{instead} a host of this namespace's own"
    )


def _same_route(c: Claim, holder: Claim) -> str:
    if holder.kind == FUNCTION_URL:
        return (
            f"{holder.described} routes every path and method of host {c.host}; a Trigger "
            "of its namespace may route a longer path prefix there. Give this Trigger a "
            "longer path prefix or another host"
        )
    return (
        f"{holder.described} already routes this host, path prefix and method, and the "
        "older Trigger keeps the route. Delete one of them, or give them other methods or "
        "path prefixes"
    )
