"""Who owns which route: one decision over every HTTP Trigger's and Function URL's claim.

The claims are kept by kopf indexes (``route_claims`` of Triggers, ``url_claims`` of
Functions, declared with their writers), which kopf hands to every handler; the decision is
:func:`kfn.api.routes.decide`, the one the activator routes by.
"""

from __future__ import annotations

import functools
from typing import Any

import kopf

from kfn.api import routes
from kfn.operator import settings

Key = routes.Key


def ownership(*indexes: kopf.Index[Key, routes.Claim]) -> routes.Ownership:
    """Who owns which route, given the claims in these indexes."""
    claims = frozenset(claim for index in indexes for key in index for claim in index.get(key, []))
    return _decide(claims, settings.host_policy())


def of(kwargs: dict[str, Any]) -> routes.Ownership:
    """The decision over the indexes kopf passed a handler."""
    return ownership(kwargs["route_claims"], kwargs["url_claims"])


@functools.lru_cache(maxsize=1)
def _decide(claims: frozenset[routes.Claim], policy: routes.HostPolicy) -> routes.Ownership:
    """Every event asks; the claims change far less often than statuses are written."""
    return routes.decide(claims, policy)
