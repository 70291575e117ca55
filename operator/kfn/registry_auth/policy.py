"""Who may do what in the registry: robot credentials, subjects, and the grant of scopes.

Pure: no I/O and no clock (``now`` is passed in), so every rule is tested by tables.

* **Robot credentials** are stateless, as Harbor's robot accounts are from the user's side:
  ``kfn+<namespace>`` with the password ``v1.<unix expiry>.<HMAC>``, the HMAC-SHA256 under the
  service's robot key of ``"<namespace>\\n<expiry>"``. The token service checks one without
  a database, and the operator issues and rotates them (:func:`needs_renewal`) into each
  namespace's Secret. A leaked one dies at its expiry; changing the key revokes them all.
* **Subjects**: anonymous (no credentials), admin (one configured password), or the robot of
  a namespace.
* **Grants** (:meth:`Policy.grant`): the admin gets what it asks; the robot of namespace
  ``ns`` gets ``pull,push`` on repositories under ``fn/<ns>/`` and ``pull`` on the public
  prefixes; anonymous gets ``pull`` on the public prefixes; ``registry:catalog:*`` is the
  admin's alone. Names are compared by path component, never by string prefix, and only
  names of the distribution grammar get anything, so ``fn/a-b/x`` is not namespace ``a``'s
  and ``fn/a/../b/x`` is nobody's.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Final, Literal

ROBOT_PREFIX: Final = "kfn+"
ADMIN_USERNAME: Final = "admin"
#: Where each namespace's function images live: ``fn/<namespace>/<function>``.
FUNCTIONS_PREFIX: Final = "fn"
_VERSION: Final = "v1"
#: A Kubernetes namespace name (an RFC 1123 label).
_NAMESPACE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: One path component of a repository name, per the distribution reference grammar.
_COMPONENT: Final = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_MAX_NAME: Final = 255
_EXPIRY: Final = re.compile(r"^[0-9]{1,12}$")
_RESOURCE_TYPE: Final = re.compile(r"^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$")
_ACTION: Final = re.compile(r"^(?:\*|[a-z]+)$")

PULL: Final = "pull"
PUSH: Final = "push"


@dataclasses.dataclass(frozen=True, slots=True)
class Subject:
    """Who a token is for."""

    kind: Literal["anonymous", "admin", "robot"]
    namespace: str = ""

    def __str__(self) -> str:
        return robot_username(self.namespace) if self.kind == "robot" else self.kind


ANONYMOUS: Final = Subject("anonymous")
ADMIN: Final = Subject("admin")


def robot(namespace: str) -> Subject:
    if not valid_namespace(namespace):
        raise ValueError(f"{namespace!r} is not a namespace name")
    return Subject("robot", namespace)


def valid_namespace(namespace: str) -> bool:
    return bool(_NAMESPACE.match(namespace))


def robot_username(namespace: str) -> str:
    return f"{ROBOT_PREFIX}{namespace}"


@dataclasses.dataclass(frozen=True)
class RobotCredentials:
    """What the operator writes into a namespace's registry Secret."""

    username: str
    password: str = dataclasses.field(repr=False)
    expires: datetime.datetime


def issue_robot(key: bytes, namespace: str, expires: datetime.datetime) -> RobotCredentials:
    """The robot credentials of ``namespace``, valid until ``expires`` (whole seconds)."""
    if not valid_namespace(namespace):
        raise ValueError(f"{namespace!r} is not a namespace name")
    expiry = _unix(expires)
    password = f"{_VERSION}.{expiry}.{_mac(key, namespace, expiry)}"
    return RobotCredentials(
        robot_username(namespace), password, datetime.datetime.fromtimestamp(expiry, datetime.UTC)
    )


RobotCheck = Literal["valid", "expired", "invalid"]


def check_robot(
    key: bytes, username: str, password: str, now: datetime.datetime
) -> tuple[RobotCheck, str]:
    """Whether a robot login holds, and the namespace it names (``""`` when it names none).

    ``expired`` is only said of a password whose HMAC is right, so it tells nothing to
    someone guessing; the comparison takes the same time whatever the guess.
    """
    if not username.startswith(ROBOT_PREFIX):
        return "invalid", ""
    namespace = username[len(ROBOT_PREFIX) :]
    parsed = _parse_password(password)
    if not valid_namespace(namespace) or parsed is None:
        return "invalid", ""
    expiry, mac = parsed
    expected = _mac(key, namespace, expiry)
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        return "invalid", ""
    if _unix(now) >= expiry:
        return "expired", namespace
    return "valid", namespace


def verify(
    username: str,
    password: str,
    *,
    robot_key: bytes,
    admin_password: str,
    now: datetime.datetime,
) -> Subject | None:
    """The subject a user name and password sign in as, or None if they are wrong or expired."""
    if username == ADMIN_USERNAME:
        if admin_password and hmac.compare_digest(admin_password.encode(), password.encode()):
            return ADMIN
        return None
    result, namespace = check_robot(robot_key, username, password, now)
    return robot(namespace) if result == "valid" else None


def robot_expiry(password: str) -> datetime.datetime | None:
    """When a robot password expires (read, not verified), or None if it is not one."""
    parsed = _parse_password(password)
    if parsed is None:
        return None
    return datetime.datetime.fromtimestamp(parsed[0], datetime.UTC)


def needs_renewal(password: str, *, lifetime: datetime.timedelta, now: datetime.datetime) -> bool:
    """Whether the operator should issue new robot credentials: past half their ``lifetime``
    (so build Jobs that read the Secret a while ago still hold valid ones), or unreadable."""
    expires = robot_expiry(password)
    if expires is None:
        return True
    return now >= expires - lifetime / 2


def _parse_password(password: str) -> tuple[int, str] | None:
    version, _, rest = password.partition(".")
    expiry, _, mac = rest.partition(".")
    if version != _VERSION or not _EXPIRY.match(expiry) or not mac:
        return None
    return int(expiry), mac


def _mac(key: bytes, namespace: str, expiry: int) -> str:
    if not key:
        raise ValueError("the robot key is empty")
    digest = hmac.new(key, f"{namespace}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _unix(moment: datetime.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return int(moment.timestamp())


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    """``repository:fn/a/app:pull,push``: a resource and the actions asked or granted on it.

    ``resource_class`` is the ``plugin`` of ``repository(plugin):…`` (Docker plugins).
    """

    type: str
    name: str
    actions: tuple[str, ...]
    resource_class: str = ""

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """A scope per the token spec, or None if ``text`` is not one.

        The name may hold ``/`` and, with a registry host, ``:`` (``localhost:5000/a``):
        the type ends at the first colon and the actions start after the last.
        """
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        match = _RESOURCE_TYPE.match(kind)
        if not sep or not sep2 or not name or match is None:
            return None
        wanted = tuple(sorted({a for a in actions.split(",") if a}))
        if not wanted or not all(_ACTION.match(a) for a in wanted):
            return None
        return cls(match.group(1), name, wanted, match.group(2) or "")

    def __str__(self) -> str:
        kind = f"{self.type}({self.resource_class})" if self.resource_class else self.type
        return f"{kind}:{self.name}:{','.join(self.actions)}"

    def claim(self) -> dict[str, object]:
        """The scope as an entry of a token's ``access`` claim."""
        entry: dict[str, object] = {
            "type": self.type,
            "name": self.name,
            "actions": list(self.actions),
        }
        if self.resource_class:
            entry["class"] = self.resource_class
        return entry


def repository_components(name: str) -> tuple[str, ...] | None:
    """The path components of a valid repository name, or None: ``..``, empty components,
    upper case and anything else outside the distribution grammar make a name invalid."""
    if not name or len(name) > _MAX_NAME:
        return None
    parts = tuple(name.split("/"))
    if not all(_COMPONENT.match(part) for part in parts):
        return None
    return parts


@dataclasses.dataclass(frozen=True)
class Policy:
    """The grant rules, with the repository prefixes everyone may pull (``kfn/``, ``charts/``)."""

    public_prefixes: tuple[str, ...] = ()
    _public: tuple[tuple[str, ...], ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        public = []
        for prefix in self.public_prefixes:
            parts = repository_components(prefix.strip("/"))
            if parts is None:
                raise ValueError(f"public prefix {prefix!r} is not a repository path")
            if parts[0] == FUNCTIONS_PREFIX:
                raise ValueError(
                    f"public prefix {prefix!r}: {FUNCTIONS_PREFIX}/ holds the namespaces' "
                    "function images and is never public"
                )
            public.append(parts)
        object.__setattr__(self, "_public", tuple(public))

    def grant(self, subject: Subject, requested: Sequence[Scope]) -> list[Scope]:
        """What of ``requested`` ``subject`` gets, in the order asked, scopes naming the same
        resource merged; a scope granted nothing is left out."""
        merged: dict[tuple[str, str, str], set[str]] = {}
        for scope in requested:
            key = (scope.type, scope.resource_class, scope.name)
            merged.setdefault(key, set()).update(scope.actions)
        granted = []
        for (kind, resource_class, name), actions in merged.items():
            allowed = actions & self._allowed(subject, kind, name, actions)
            if allowed:
                granted.append(Scope(kind, name, tuple(sorted(allowed)), resource_class))
        return granted

    def _allowed(self, subject: Subject, kind: str, name: str, asked: set[str]) -> set[str]:
        if kind == "registry":
            return set(asked) if subject.kind == "admin" and name == "catalog" else set()
        if kind != "repository":
            return set()
        parts = repository_components(name)
        if parts is None:
            return set()
        if subject.kind == "admin":
            return set(asked)
        allowed = {PULL} if self.is_public(parts) else set()
        if subject.kind == "robot" and owns(subject.namespace, parts):
            allowed |= {PULL, PUSH}
        return allowed

    def is_public(self, parts: tuple[str, ...]) -> bool:
        return any(parts[: len(prefix)] == prefix for prefix in self._public)


def owns(namespace: str, parts: tuple[str, ...]) -> bool:
    """Whether a repository is one of ``namespace``'s: ``fn/<namespace>/<something>``."""
    return len(parts) >= 3 and parts[0] == FUNCTIONS_PREFIX and parts[1] == namespace
