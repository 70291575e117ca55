"""Who may send the autoscaler stats: kfn's activators, and nobody else.

Any pod can reach the autoscaler's Service, and a stats message decides how many pods a
function gets: fake load would scale a tenant's function up (its cost) or hold it at zero.
So every message carries the sender's ServiceAccount token (``Authorization: Bearer``, a
projected token for the audience :data:`kfn.stats.AUDIENCE`), the API server reviews it
(:class:`kfn.authn.reviews.TokenReviews`: kept a minute, never past the token's expiry, one
review for concurrent messages), and only the users the chart names are accepted: the
activators' ServiceAccount, ``system:serviceaccount:<release namespace>:<activator>``.

:func:`judge` decides from a review (pure); :class:`Callers` asks for the review when it is
not kept. Without a token: 401. A token the API server does not accept: 401 with its
reason. Someone else's token: 403 naming them. The API server not answering: 503 at once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Final

from kfn import stats
from kfn.authn import reviews, tokens

logger = logging.getLogger(__name__)

#: Different tokens under review at once: the activators send a handful; more is someone
#: making tokens up, and the API server is not asked for them.
MAX_ASKING: Final = 32


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a message is taken; a refusal's status and what the sender should do."""

    accepted: bool
    status: int = 204
    message: str = ""


ACCEPTED: Final = Verdict(True)


def no_token(reason: str) -> Verdict:
    return Verdict(
        False,
        401,
        f"{reason}: the autoscaler takes stats only from kfn's activators, with "
        f"'Authorization: Bearer <token>' and a ServiceAccount token for the audience "
        f"'{stats.AUDIENCE}'",
    )


def judge(review: tokens.Identity | tokens.Invalid, accepted: frozenset[str]) -> Verdict:
    """Whether the sender a token's review names may send stats (pure)."""
    if isinstance(review, tokens.Invalid):
        return no_token(f"the token is not valid for the audience '{stats.AUDIENCE}': "
                        f"{review.reason or 'refused'}")  # fmt: skip
    if review.username in accepted:
        return ACCEPTED
    return Verdict(
        False,
        403,
        f"{review.username} may not send stats: the autoscaler takes them only from "
        f"{', '.join(sorted(accepted))}",
    )


def unavailable(reason: str) -> Verdict:
    return Verdict(False, 503, f"the autoscaler could not check the sender's token: {reason}")


class Callers:
    """Decides whether a message's ``Authorization`` header lets it in (see the module doc)."""

    def __init__(self, reviewed: reviews.TokenReviews, accepted: Iterable[str]) -> None:
        self.reviewed = reviewed
        self.accepted = frozenset(accepted)
        if not self.accepted:
            raise ValueError("no sender is accepted: name the activators' ServiceAccount")

    def cached(self, authorization: bytes) -> Verdict | None:
        """The verdict without waiting, or None when the API server must be asked."""
        token = tokens.bearer(authorization)
        if isinstance(token, tokens.Unreadable):
            return no_token(token.reason)
        review = self.reviewed.cached(token)
        return None if review is None else judge(review, self.accepted)

    async def decide(self, authorization: bytes) -> Verdict:
        """The verdict, asking the API server when the token's review is not kept."""
        token = tokens.bearer(authorization)
        if isinstance(token, tokens.Unreadable):
            return no_token(token.reason)
        try:
            review = await self.reviewed.review(token)
        except tokens.ReviewFailedError as exc:
            logger.warning("reviewing a stats sender's token failed: %s", exc)
            return unavailable(str(exc))
        return judge(review, self.accepted)
