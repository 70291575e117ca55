"""The API server's answers to :mod:`~kfn.activator.access`: TokenReview and
SubjectAccessReview through :mod:`kfn.kube`, run off the event loop.

Each review is bounded by :data:`TIMEOUT`; one that cannot be made (the API server
unreachable, or kfn's own ServiceAccount refused the review) raises
:class:`~kfn.activator.access.ReviewFailedError`, which the caller hears as 503 at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import urllib3.exceptions

from kfn import kube, stats
from kfn.activator import access

TIMEOUT: Final = 5.0


def identity_of(
    status: Mapping[str, Any], token: str, *, wall: float, loop: float
) -> access.Identity | access.Invalid:
    """A TokenReview's ``status`` as an identity, or why the token is not accepted.

    The token's expiry (a JWT's ``exp``, read only after the API server accepted the
    token) is moved to the loop's clock (``loop`` and ``wall`` are the same instant on
    each), so that the review is never kept past it.
    """
    if not status.get("authenticated"):
        return access.Invalid(str(status.get("error") or "not authenticated"))
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username:
        return access.Invalid("the review named no user")
    expiry = jwt_expiry(token)
    extra = user.get("extra") or {}
    return access.Identity(
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


def attributes(function: stats.FunctionKey) -> dict[str, str]:
    """The SubjectAccessReview's resource attributes for invoking ``function``."""
    return {
        "namespace": function.namespace,
        "verb": access.VERB,
        "group": access.GROUP,
        "resource": access.RESOURCE,
        "name": function.name,
    }


def user_of(identity: access.Identity) -> dict[str, Any]:
    user: dict[str, Any] = {"username": identity.username}
    if identity.uid:
        user["uid"] = identity.uid
    if identity.groups:
        user["groups"] = list(identity.groups)
    if identity.extra:
        user["extra"] = {key: list(values) for key, values in identity.extra}
    return user


_FAILURES: Final = (kube.ApiError, urllib3.exceptions.HTTPError, OSError, TimeoutError)


class ApiServerReviews:
    """Reviews by the cluster's API server (see the module doc)."""

    def __init__(
        self,
        audiences: Sequence[str] = (access.AUDIENCE,),
        *,
        loop_clock: Callable[[], float],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.audiences = tuple(audiences)
        self.loop_clock = loop_clock
        self.wall_clock = wall_clock

    async def review_token(self, token: str) -> access.Identity | access.Invalid:
        try:
            status = await asyncio.to_thread(
                kube.review_token, token, self.audiences, timeout=TIMEOUT
            )
        except _FAILURES as exc:
            raise access.ReviewFailedError(f"TokenReview: {exc}") from None
        return identity_of(status, token, wall=self.wall_clock(), loop=self.loop_clock())

    async def review_access(
        self, identity: access.Identity, function: stats.FunctionKey
    ) -> tuple[bool, str]:
        try:
            status = await asyncio.to_thread(
                kube.review_access, user_of(identity), attributes(function), timeout=TIMEOUT
            )
        except _FAILURES as exc:
            raise access.ReviewFailedError(f"SubjectAccessReview: {exc}") from None
        allowed = bool(status.get("allowed")) and not status.get("denied")
        return allowed, str(status.get("reason") or status.get("evaluationError") or "")
