"""The API server's answers to :mod:`~kfn.activator.access`: TokenReview and
SubjectAccessReview through :mod:`kfn.kube`, run off the event loop (the TokenReview by
:class:`kfn.authn.reviews.ApiServer`, shared with the autoscaler).

Each review is bounded by :data:`TIMEOUT`; one that cannot be made (the API server
unreachable, or kfn's own ServiceAccount refused the review) raises
:class:`~kfn.activator.access.ReviewFailedError`, which the caller hears as 503 at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from kfn import kube, stats
from kfn.activator import access
from kfn.authn import reviews

TIMEOUT: Final = reviews.TIMEOUT


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


_FAILURES: Final = kube.FAILURES


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
        self.review_token = reviews.ApiServer(
            kube.review_token,
            self.audiences,
            failures=_FAILURES,
            loop_clock=loop_clock,
            wall_clock=wall_clock,
            timeout=TIMEOUT,
        )

    async def review_access(
        self, identity: access.Identity, function: stats.FunctionKey
    ) -> tuple[bool, str]:
        return await self.review(identity, attributes(function))

    async def review(self, identity: access.Identity, resource: dict[str, str]) -> tuple[bool, str]:
        """Whether RBAC lets ``identity`` act as ``resource`` (SubjectAccessReview's resource
        attributes: namespace, verb, group, resource, name) says."""
        try:
            status = await asyncio.to_thread(
                kube.review_access, user_of(identity), resource, timeout=TIMEOUT
            )
        except _FAILURES as exc:
            raise access.ReviewFailedError(f"SubjectAccessReview: {exc}") from None
        allowed = bool(status.get("allowed")) and not status.get("denied")
        return allowed, str(status.get("reason") or status.get("evaluationError") or "")
