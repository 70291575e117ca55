"""Tokens reviewed by the API server, once, and the answer kept.

:class:`TokenReviews` is what a component asks: the review of a token, from its cache when
it has one (kept :data:`~kfn.authn.tokens.TTL`, never past the token's expiry, at most
``limit`` tokens, least recently used first out), else asked once however many callers wait
for it. A caller that goes away does not end the review for the others. A review that could
not be made (:class:`~kfn.authn.tokens.ReviewFailedError`) is not kept: the next caller asks
again, and each caller hears it at once.

:class:`ApiServer` asks: it runs the component's blocking TokenReview call (``kfn.kube``'s,
handed in so that this package stays a leaf) in a thread, bounded by :data:`TIMEOUT`, and
reads the answer with :func:`kfn.authn.tokens.identity_of`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from kfn import expiring
from kfn.authn import tokens

#: Seconds one TokenReview may take before the caller hears that it failed.
TIMEOUT: Final = 5.0

#: Reviews a token (asks the API server); raises ``ReviewFailedError`` when it cannot.
Review = Callable[[str], Awaitable[tokens.Identity | tokens.Invalid]]


class ReviewStatus(Protocol):
    """The blocking TokenReview call (``kfn.kube.review_token``): the review's ``status``."""

    def __call__(
        self, token: str, audiences: Sequence[str], *, timeout: float
    ) -> Mapping[str, Any]: ...


class TokenReviews:
    """Tokens reviewed once and the answers kept (see the module doc)."""

    def __init__(
        self,
        review: Review,
        *,
        clock: Callable[[], float],
        ttl: float = tokens.TTL,
        limit: int = expiring.LIMIT,
        max_asking: int | None = None,
    ) -> None:
        self.review_token = review
        self.clock = clock
        self.ttl = ttl
        #: Different tokens under review at once, past which a new one is refused as a
        #: failed review (None: no bound): made-up tokens cannot pile reviews on the API server.
        self.max_asking = max_asking
        self.answers: expiring.Expiring[str, tokens.Identity | tokens.Invalid] = expiring.Expiring(
            limit
        )
        self._asking: dict[str, asyncio.Task[tokens.Identity | tokens.Invalid]] = {}

    def cached(self, token: str) -> tokens.Identity | tokens.Invalid | None:
        """The kept review of ``token``, or None when the API server must be asked."""
        return self.answers.get(token, self.clock())

    async def review(self, token: str) -> tokens.Identity | tokens.Invalid:
        """The review of ``token``, asked once for all concurrent callers; raises
        :class:`~kfn.authn.tokens.ReviewFailedError` when it could not be made."""
        known = self.cached(token)
        if known is not None:
            return known
        asking = self._asking.get(token)
        if asking is None:
            if self.max_asking is not None and len(self._asking) >= self.max_asking:
                raise tokens.ReviewFailedError(
                    f"{len(self._asking)} tokens are under review already"
                )
            # A task of its own: a caller that goes away does not end the others' review.
            asking = asyncio.get_running_loop().create_task(self._ask(token))
            self._asking[token] = asking
            asking.add_done_callback(lambda _: self._asking.pop(token, None))
        return await asyncio.shield(asking)

    async def _ask(self, token: str) -> tokens.Identity | tokens.Invalid:
        answer = await self.review_token(token)
        self.answers.put(token, answer, tokens.until(answer, self.clock(), self.ttl))
        return answer


class ApiServer:
    """The cluster's API server, asked for TokenReviews off the event loop."""

    def __init__(
        self,
        review_status: ReviewStatus,
        audiences: Sequence[str],
        *,
        failures: tuple[type[BaseException], ...],
        loop_clock: Callable[[], float],
        wall_clock: Callable[[], float] = time.time,
        timeout: float = TIMEOUT,
    ) -> None:
        self.review_status = review_status
        self.audiences = tuple(audiences)
        #: What the call raises when the API server could not answer (``kfn.kube.FAILURES``).
        self.failures = failures
        self.loop_clock = loop_clock
        self.wall_clock = wall_clock
        self.timeout = timeout

    async def __call__(self, token: str) -> tokens.Identity | tokens.Invalid:
        try:
            status = await asyncio.to_thread(
                self.review_status, token, self.audiences, timeout=self.timeout
            )
        except self.failures as exc:
            raise tokens.ReviewFailedError(f"TokenReview: {exc}") from None
        return tokens.identity_of(status, token, wall=self.wall_clock(), loop=self.loop_clock())
