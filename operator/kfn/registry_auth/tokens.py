"""One ``GET /token`` decided: who asks, what they get, and the answer to send.

No I/O and no clock (``now`` is passed in); :mod:`kfn.registry_auth.server` carries the
request here and the answer back. Per the token spec
(https://distribution.github.io/distribution/spec/auth/token/): ``service`` must be ours,
each ``scope`` parameter (or space-separated scope in one) is a resource and actions, and
credentials come as HTTP Basic. Wrong credentials are answered ``401``; no credentials get a
token with what anonymous may have, possibly nothing, and the registry then refuses the
request itself, as it would for any scope the token lacks.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import urllib.parse
from typing import Any, Final

from kfn.registry_auth import jwt, policy

#: More scopes than any client asks at once (a mount asks two) are refused as a request.
MAX_SCOPES: Final = 32
_MAX_FIELDS: Final = 64


@dataclasses.dataclass(frozen=True)
class Settings:
    """The token service's configuration (see ``python -m kfn.registry_auth --help``)."""

    issuer: str
    service: str
    signing_key: jwt.SigningKey = dataclasses.field(repr=False)
    robot_key: bytes = dataclasses.field(repr=False)
    admin_password: str = dataclasses.field(repr=False)
    policy: policy.Policy
    ttl: datetime.timedelta = datetime.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What to send back (``status``, a JSON ``body``) and the line to log for it."""

    status: int
    body: dict[str, Any]
    log: str


def answer(
    settings: Settings,
    query: str,
    authorization: str | None,
    now: datetime.datetime,
    jti: str | None = None,
) -> Answer:
    """Answers one ``GET /token``. ``jti`` is random unless given (tests give one)."""
    params = _params(query)
    if params is None:
        return _error(400, "INVALID_REQUEST", "too many query parameters", "bad query")
    login = _basic(authorization)
    if login is None:
        return _error(
            401, "UNAUTHORIZED", "credentials must be HTTP Basic", "refused: malformed credentials"
        )
    return _decide(settings, params, login, now, jti)


def answer_form(
    settings: Settings, form: str, now: datetime.datetime, jti: str | None = None
) -> Answer:
    """Answers one ``POST /token``: the OAuth2 password grant of Docker's token spec
    (``grant_type=password`` with ``username``, ``password``, ``service``, ``scope``), which
    containerd uses first whenever it holds a password. No refresh tokens are issued, so a
    ``refresh_token`` grant is refused and the client falls back to its password."""
    params = _params(form)
    if params is None:
        return _error(400, "INVALID_REQUEST", "too many form fields", "bad form")
    grant = (params.get("grant_type") or [""])[0]
    if grant != "password":
        return Answer(
            400,
            {"error": "unsupported_grant_type", "error_description": "only password is granted"},
            f"refused: grant_type {grant!r}",
        )
    username = (params.get("username") or [""])[0]
    password = (params.get("password") or [""])[0]
    if not username:
        return _error(401, "UNAUTHORIZED", "a user name is required", "refused: no user name")
    return _decide(settings, params, (username, password), now, jti)


def _params(text: str) -> dict[str, list[str]] | None:
    try:
        return urllib.parse.parse_qs(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=_MAX_FIELDS
        )
    except ValueError:
        return None


def _decide(
    settings: Settings,
    params: dict[str, list[str]],
    login: tuple[str, str],
    now: datetime.datetime,
    jti: str | None,
) -> Answer:
    """Who asks (``("", "")`` is anonymous), what they may have, and the token saying so."""
    services = params.get("service", [])
    if any(service != settings.service for service in services):
        message = f"this token service serves {settings.service!r}, not {services[0]!r}"
        return _error(400, "INVALID_REQUEST", message, f"refused: {message}")
    texts = [text for value in params.get("scope", []) for text in value.split()]
    if len(texts) > MAX_SCOPES:
        return _error(400, "INVALID_REQUEST", f"more than {MAX_SCOPES} scopes", "too many scopes")
    requested = [scope for text in texts if (scope := policy.Scope.parse(text)) is not None]
    malformed = [text for text in texts if policy.Scope.parse(text) is None]

    if login == ("", ""):
        subject = policy.ANONYMOUS
    else:
        username, password = login
        found = policy.verify(
            username,
            password,
            robot_key=settings.robot_key,
            admin_password=settings.admin_password,
            now=now,
        )
        if found is None:
            reason = _refusal(settings, username, password, now)
            return _error(401, "UNAUTHORIZED", reason, f"refused {username}: {reason}")
        subject = found

    granted = settings.policy.grant(subject, requested)
    token = jwt.mint(
        settings.signing_key,
        issuer=settings.issuer,
        subject=str(subject) if subject != policy.ANONYMOUS else "",
        audience=settings.service,
        access=granted,
        now=now,
        ttl=settings.ttl,
        jti=jti,
    )
    issued = now.astimezone(datetime.UTC).replace(microsecond=0).isoformat()
    body = {
        "token": token,
        "access_token": token,
        "expires_in": int(settings.ttl.total_seconds()),
        "issued_at": issued.replace("+00:00", "Z"),
        "scope": " ".join(str(s) for s in granted),
    }
    ignored = f" ignored={malformed}" if malformed else ""
    log = (
        f"token for {subject}: requested={[str(s) for s in requested]} "
        f"granted={[str(s) for s in granted]}{ignored}"
    )
    return Answer(200, body, log)


def _basic(authorization: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of a Basic header, ``("", "")`` without one, None if malformed."""
    if authorization is None or not authorization.strip():
        return "", ""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        return None
    return username, password


def _refusal(settings: Settings, username: str, password: str, now: datetime.datetime) -> str:
    """Why a login failed, saying "expired" only of a robot password that is otherwise right."""
    result, namespace = policy.check_robot(settings.robot_key, username, password, now)
    if result == "expired":
        expires = policy.robot_expiry(password)
        when = expires.isoformat().replace("+00:00", "Z") if expires else "?"
        return f"the robot credentials of namespace {namespace} expired at {when}"
    return "incorrect username or password"


def _error(status: int, code: str, message: str, log: str) -> Answer:
    return Answer(status, {"errors": [{"code": code, "message": message}]}, log)
