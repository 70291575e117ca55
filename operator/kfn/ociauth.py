"""The pure half of signing in to a registry: credentials, challenges, scopes, token lifetimes.

Registries that need a login (Harbor, GHCR, GitLab, Docker Hub, ``docker-registry`` with
``auth: token``) answer an anonymous request with ``401`` and a ``WWW-Authenticate``
challenge. ``Basic`` asks for the user name and password on every request; ``Bearer`` names a
token service (``realm``), the ``service`` and the ``scope`` s the request needs, and the
client trades its password there for a short-lived token (the Docker token flow,
https://distribution.github.io/distribution/spec/auth/token/).

Everything here decides without I/O and reads no clock (``now`` is passed in), so the rules
are tested by tables; :class:`kfn.oci.Registry` does the requests. Like :mod:`kfn.oci`, this
module uses only the standard library: it runs inside build Jobs.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final, Literal

#: A token is used until this long before the service said it expires (at most half its life),
#: so a request never leaves with a token that dies on the way.
TOKEN_MARGIN: Final = 10.0
#: Tokens one registry client keeps at most (one per realm, service and scopes).
TOKEN_LIMIT: Final = 64
#: What the token flow assumes when a token service does not say (the spec's default).
DEFAULT_TOKEN_SECONDS: Final = 60.0
#: Registry answers quoted in errors are cut here: enough for the code and the message.
ANSWER_LIMIT: Final = 300
#: Docker Hub's three names; ``docker login`` stores ``https://index.docker.io/v1/``.
_DOCKER_HUB: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REPOSITORY_PATH: Final = re.compile(r"^/v2/(.+)/(blobs|manifests|tags)/")


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A user name and password for one registry, and where they came from.

    ``source`` (``Secret tenant-a/kfn-registry``, ``file /run/auth.json``) is what error
    messages name, so a refused login says which Secret to fix. The password is left out of
    ``repr`` so that logging a client never logs it.
    """

    username: str
    password: str = dataclasses.field(repr=False)
    source: str

    @classmethod
    def from_docker_config(
        cls, data: bytes | str, registry: str, source: str
    ) -> Credentials | None:
        """The credentials a Docker config document holds for ``registry``, if any.

        Reads ``~/.docker/config.json`` and Kubernetes' ``kubernetes.io/dockerconfigjson``
        Secrets: ``auths`` maps a registry to ``auth`` (base64 of ``user:password``) or to
        ``username`` and ``password``. Keys match the host exactly, also in the forms Docker
        writes (``https://host``, ``host/v1/``, ``host/v2/``). ``ValueError`` when the
        document is not one.
        """
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"{source} is not a Docker config JSON document: {exc}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"{source} is not a Docker config JSON document (not an object)")
        auths = doc.get("auths")
        if auths is None:
            return None
        if not isinstance(auths, dict):
            raise ValueError(f"{source}: auths must be an object")
        wanted = _registry_names(registry)
        for key, entry in auths.items():
            if not isinstance(key, str) or not _registry_names(config_key_host(key)) & wanted:
                continue
            if not isinstance(entry, dict):
                raise ValueError(f"{source}: the entry for {key} must be an object")
            return cls._from_entry(entry, key, source)
        return None

    @classmethod
    def _from_entry(cls, entry: Mapping[str, object], key: str, source: str) -> Credentials:
        auth, username, password = entry.get("auth"), entry.get("username"), entry.get("password")
        if isinstance(auth, str) and auth:
            try:
                decoded = base64.b64decode(auth, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"{source}: the auth of {key} is not base64 of user:password"
                ) from exc
            user, sep, secret = decoded.partition(":")
            if not sep or not user:
                raise ValueError(f"{source}: the auth of {key} is not base64 of user:password")
            return cls(user, secret, source)
        if isinstance(username, str) and username and isinstance(password, str):
            return cls(username, password, source)
        if entry.get("identitytoken"):
            raise ValueError(
                f"{source}: the entry for {key} holds an identity token; "
                "kfn needs a user name and password"
            )
        raise ValueError(
            f"{source}: the entry for {key} has neither auth nor username and password"
        )

    def basic(self) -> str:
        """The ``Authorization`` header value of HTTP Basic authentication."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()


def docker_config(registry: str, username: str, password: str) -> bytes:
    """A ``.dockerconfigjson`` document holding one login: what the operator puts in a Secret
    for build Jobs (and what :meth:`Credentials.from_docker_config` reads back)."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    doc = {"auths": {registry: {"username": username, "password": password, "auth": auth}}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def config_key_host(key: str) -> str:
    """The registry host an ``auths`` key stands for: ``https://r.io/v1/`` → ``r.io``."""
    host = key.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    host = host.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
    return host


def _registry_names(host: str) -> frozenset[str]:
    return _DOCKER_HUB if host in _DOCKER_HUB else frozenset({host})


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: a scheme (lower case) and its
    parameters (names in lower case)."""

    scheme: str
    params: Mapping[str, str]

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes a ``Bearer`` challenge asks for (space-separated in one parameter)."""
        return tuple(self.params.get("scope", "").split())


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a ``WWW-Authenticate`` value (RFC 7235).

    A value may hold several challenges (``Bearer realm="…",scope="…", Basic realm="…"``),
    and quoted values may hold commas, spaces and escaped quotes
    (``scope="repository:a:pull,push repository:b:pull"``). Anything unparseable is skipped
    rather than refused: a client can still try the challenges it understood.
    """
    challenges: list[Challenge] = []
    params: dict[str, str] = {}
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " \t,":
            i += 1
        match = _TOKEN.match(header, i)
        if match is None:
            i += 1
            continue
        name, i = match.group(), match.end()
        j = i
        while j < n and header[j] in " \t":
            j += 1
        if j < n and header[j] == "=" and challenges:
            j += 1
            while j < n and header[j] in " \t":
                j += 1
            if j < n and header[j] == '"':
                value, i = _quoted(header, j)
            else:
                end = header.find(",", j)
                end = n if end < 0 else end
                value, i = header[j:end].strip(), end
            params[name.lower()] = value
        else:
            params = {}
            challenges.append(Challenge(name.lower(), params))
    return challenges


def _quoted(text: str, start: int) -> tuple[str, int]:
    """A quoted-string starting at ``text[start] == '"'``: its value and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return "".join(out), i


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: ``Bearer`` (with a realm) over ``Basic``; None if neither."""
    found = list(challenges)
    for challenge in found:
        if challenge.scheme == "bearer" and challenge.params.get("realm"):
            return challenge
    for challenge in found:
        if challenge.scheme == "basic":
            return challenge
    return None


def normalise_scope(scope: str) -> str:
    """``repository:a:push,pull`` → ``repository:a:pull,push``: one spelling per scope, so
    that tokens cached for a registry's challenge are found for a predicted scope."""
    head, sep, actions = scope.rpartition(":")
    if not sep:
        return scope
    return f"{head}:{','.join(sorted({a for a in actions.split(',') if a}))}"


def scope_key(realm: str, service: str, scopes: Iterable[str]) -> tuple[str, str, frozenset[str]]:
    """What a token is cached by: who issued it, for which service, for which scopes."""
    return realm, service, frozenset(normalise_scope(s) for s in scopes)


def request_scopes(method: str, path: str) -> tuple[str, ...]:
    """The scopes a distribution API request needs, as ``docker-registry`` computes them.

    Used to send a cached token with the first attempt instead of waiting for the
    challenge. Reads are ``pull``; writes ``pull,push``; a cross-repository mount
    (``?mount=…&from=…``) also needs ``pull`` on the source.
    """
    url = urllib.parse.urlsplit(path)
    if url.path.rstrip("/") == "/v2/_catalog":
        return ("registry:catalog:*",)
    match = _REPOSITORY_PATH.match(url.path)
    if match is None:
        return ()
    repository = match.group(1)
    if method in ("GET", "HEAD"):
        scopes = [f"repository:{repository}:pull"]
    elif method == "DELETE":
        scopes = [f"repository:{repository}:delete"]
    else:
        scopes = [f"repository:{repository}:pull,push"]
    source = urllib.parse.parse_qs(url.query).get("from")
    if source and source[0] != repository:
        scopes.append(f"repository:{source[0]}:pull")
    return tuple(scopes)


def describe_access(method: str, path: str) -> str:
    """What a request wanted, for messages: ``push to fn/a/app (mounting from kfn/base)``."""
    url = urllib.parse.urlsplit(path)
    if url.path.rstrip("/") == "/v2/_catalog":
        return "access to the catalog"
    match = _REPOSITORY_PATH.match(url.path)
    if match is None:
        return f"access to {url.path}"
    repository = match.group(1)
    if method in ("GET", "HEAD"):
        return f"pull from {repository}"
    if method == "DELETE":
        return f"delete in {repository}"
    source = urllib.parse.parse_qs(url.query).get("from")
    mounting = f" (mounting from {source[0]})" if source else ""
    return f"push to {repository}{mounting}"


def summarise_answer(
    status: int, body: bytes, challenge_error: str = "", limit: int = ANSWER_LIMIT
) -> str:
    """``HTTP 401 UNAUTHORIZED: authentication required``: a registry's answer in one line.

    Registries answer errors as ``{"errors": [{"code", "message", "detail"}]}``; token services
    also as ``{"details": "…"}`` (Docker Hub) or ``{"message": "…"}``. Anything else is
    quoted as text, trimmed to ``limit`` characters. An answer without a body (to ``HEAD``)
    is described by its challenge's ``error`` (``insufficient_scope``) when it has one.
    """
    text = _error_text(body) or (f"({challenge_error})" if challenge_error else "")
    out = f"HTTP {status} {text}" if text else f"HTTP {status}"
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return " ".join(body.decode("utf-8", "replace").split())
    if isinstance(doc, dict):
        errors = doc.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for error in errors[:3]:
                if isinstance(error, dict):
                    code, message = error.get("code"), error.get("message")
                    parts.append(": ".join(str(p) for p in (code, message) if p))
            return "; ".join(p for p in parts if p)
        for field in ("details", "detail", "message", "error"):
            value = doc.get(field)
            if isinstance(value, str) and value:
                return value
    return " ".join(json.dumps(doc).split())


Refusal = Literal["refused", "denied"]


def refusal_message(
    registry: str,
    refusal: Refusal,
    answer: str,
    *,
    credentials: Credentials | None,
    access: str = "",
    token_service: str = "",
) -> str:
    """The message of a refused login (``refused``) or a refused request (``denied``).

    ``registry 10.244.0.1:5000 refused the credentials of Secret ns/kfn-registry: HTTP 401
    UNAUTHORIZED: authentication required``; ``registry … denied push to fn/b/x with the
    credentials of Secret ns/kfn-registry: HTTP 403 DENIED: …``; without credentials, the
    message says so. It names what to fix (the Secret) and what the registry answered.
    """
    via = f" (token service {token_service})" if token_service else ""
    if refusal == "refused":
        who = (
            f"the credentials of {credentials.source}"
            if credentials
            else "access without credentials"
        )
        return f"registry {registry} refused {who}{via}: {answer}"
    who = f"with the credentials of {credentials.source}" if credentials else "without credentials"
    return f"registry {registry} denied {access} {who}{via}: {answer}"


def token_seconds(expires_in: object) -> float:
    """How long a token service's ``expires_in`` lets a token live (the spec's 60 s by default)."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        return DEFAULT_TOKEN_SECONDS
    return float(expires_in)


def token_until(lifetime: float, now: float) -> float:
    """Until when a token that lives ``lifetime`` seconds from ``now`` is used: the margin
    before it expires (at most half its life), so that no request leaves with a token that
    dies on the way. :class:`kfn.oci.Registry` keeps tokens in a :class:`kfn.expiring.Expiring`
    until then."""
    return now + lifetime - min(TOKEN_MARGIN, lifetime / 2)
