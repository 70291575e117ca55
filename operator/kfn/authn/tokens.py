"""Bearer tokens and what the API server says of them (pure: no I/O, time passed in).

A caller sends ``Authorization: Bearer <token>``; the API server's TokenReview says whether
the token is valid for the audiences asked and, if so, which user it names
(:func:`identity_of`). A ServiceAccount's user is
``system:serviceaccount:<namespace>:<name>`` (:func:`service_account`). The answer may be kept
:data:`TTL` seconds, never past the token's own expiry (:func:`until`): deleting the
ServiceAccount therefore takes effect within :data:`TTL`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

#: How long a token's review is kept (never past the token's expiry).
TTL: Final = 60.0
#: Tokens longer than this are refused unread (a projected token is about 1 KiB).
MAX_TOKEN: Final = 8192


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who a reviewed token names, as the API server's TokenReview said."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: When the token itself expires (the loop's clock), if the review said.
    expires: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Invalid:
    """A token the API server did not accept, and its reason."""

    reason: str


class ReviewFailedError(Exception):
    """The API server could not be asked (unreachable, or it refused kfn's own request)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Unreadable:
    """An ``Authorization`` header that carries no usable bearer token, and why."""

    reason: str


def service_account(namespace: str, name: str) -> str:
    """The user a ServiceAccount's token names."""
    return f"system:serviceaccount:{namespace}:{name}"


def bearer(authorization: bytes) -> str | Unreadable:
    """The token of an ``Authorization`` header value, or why there is none."""
    scheme, _, token = authorization.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return Unreadable("no bearer token")
    if len(token) > MAX_TOKEN:
        return Unreadable(f"the bearer token is longer than {MAX_TOKEN} bytes")
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        return Unreadable("the bearer token is not ASCII")


def until(identity: Identity | Invalid, now: float, ttl: float) -> float:
    """How long a token's review is kept: ``ttl``, never past the token's expiry."""
    kept = now + ttl
    if isinstance(identity, Identity) and identity.expires is not None:
        kept = min(kept, identity.expires)
    return kept


def identity_of(
    status: Mapping[str, Any], token: str, *, wall: float, loop: float
) -> Identity | Invalid:
    """A TokenReview's ``status`` as an identity, or why the token is not accepted.

    The token's expiry (a JWT's ``exp``, read only after the API server accepted the
    token) is moved to the loop's clock (``loop`` and ``wall`` are the same instant on
    each), so that the review is never kept past it.
    """
    if not status.get("authenticated"):
        return Invalid(str(status.get("error") or "not authenticated"))
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username:
        return Invalid("the review named no user")
    expiry = jwt_expiry(token)
    extra = user.get("extra") or {}
    return Identity(
        username=username,
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or ()),
        extra=tuple(sorted((str(k), tuple(str(v) for v in vs)) for k, vs in extra.items())),
        expires=None if expiry is None else loop + (expiry - wall),
    )


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (unix seconds), or None for a token that is no JWT or has
    none. The signature is not checked here: only a token the API server accepted is read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None
