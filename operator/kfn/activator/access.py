"""Who may invoke a function through the invoke API: a bearer token, checked by RBAC.

The invoke door (:mod:`~kfn.activator.proxy`'s second listener) asks every request for
``Authorization: Bearer <token>``, and the public door asks it of the requests for a route
whose Trigger asks for ``auth: ServiceAccountToken``. The token is reviewed by the API
server (TokenReview, for the audiences the activator accepts, ``kfn`` by default: a
projected ServiceAccount token made for kfn, so one sent to a function cannot be replayed
to the API server), and the identity it names is authorised by the API server too
(SubjectAccessReview of the verb ``invoke`` on ``functions`` in group ``kfn.dev``, the
function's namespace and name). So whoever RBAC lets invoke a function may, and nobody
else; ``kfn-invoker`` is the ClusterRole to bind, aggregated into ``edit`` and ``admin``.

Both answers are cached, so the warm path is one dict lookup (and on a connection that asks
the same question again, one comparison: :class:`Recent`): a reviewed token for
:data:`TOKEN_TTL` (never past the token's own expiry), an access decision for
:data:`ALLOWED_TTL` when allowed and :data:`DENIED_TTL` when not (so a binding just made
is seen quickly). Removing a binding therefore revokes access within ``ALLOWED_TTL``;
deleting a ServiceAccount within ``TOKEN_TTL``. Concurrent requests that miss the cache for
the same question share one review. An allowed decision still in use is reviewed again
:data:`REFRESH_AHEAD` before it expires, while it keeps answering, so a steady caller never
waits for the API server (nor does every request arriving while it answers take the slow
path) and is never served past the decision's expiry either. The caches are bounded in
entries, least recently used first out, and tokens longer than :data:`MAX_TOKEN` are
refused unread.

The decisions and the answers are decided here without I/O, time passed in; the reviews are
injected (:mod:`~kfn.activator.reviews` asks the API server). A token's review is kept in
:class:`kfn.authn.reviews.TokenReviews`, which the autoscaler uses for its callers too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final

from kfn import expiring, stats
from kfn.activator import answers
from kfn.authn import reviews, tokens

logger = logging.getLogger(__name__)

TOKEN_TTL: Final = tokens.TTL
ALLOWED_TTL: Final = 10.0
DENIED_TTL: Final = 2.0
#: How long before an allowed decision expires a request that finds it starts its review
#: again (at most half its lifetime).
REFRESH_AHEAD: Final = 2.0
#: A failed review (the API server unreachable) is not cached: the next request asks again.
CACHE_LIMIT: Final = expiring.LIMIT
MAX_TOKEN: Final = tokens.MAX_TOKEN
#: The audience a token for kfn is made for (``kubectl create token <sa> --audience kfn``).
AUDIENCE: Final = "kfn"
VERB: Final = "invoke"
GROUP: Final = "kfn.dev"
RESOURCE: Final = "functions"
CHALLENGE: Final = b'WWW-Authenticate: Bearer realm="kfn"\r\n'


#: Who a reviewed token names, and a token the API server did not accept
#: (:mod:`kfn.authn.tokens`, shared with the autoscaler).
Identity = tokens.Identity
Invalid = tokens.Invalid


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a caller may invoke a function; a refusal carries its answer."""

    allowed: bool
    refusal: answers.Answer | None = None
    #: Until when (the loop's clock) a cached decision holds; not part of what it says.
    until: float = dataclasses.field(default=math.inf, compare=False)
    #: From when a request that finds it cached starts its review again (see the module doc).
    refresh_at: float = dataclasses.field(default=math.inf, compare=False)


ALLOWED: Final = Verdict(True)

#: Reviews the token (TokenReview); raises ``ReviewFailedError`` when it cannot.
ReviewToken = Callable[[str], Awaitable[Identity | Invalid]]
#: Whether the identity may invoke the function, and the API server's reason.
ReviewAccess = Callable[[Identity, stats.FunctionKey], Awaitable[tuple[bool, str]]]

#: The API server could not be asked: the caller hears 503 at once.
ReviewFailedError = tokens.ReviewFailedError


# --- answers ---------------------------------------------------------------------------------

NO_TOKEN: Final = answers.error(
    401,
    "UnrecognizedClientException",
    "invoking this function needs a bearer token: send 'Authorization: Bearer <token>' with "
    f"a ServiceAccount token for the audience '{AUDIENCE}' "
    f"(kubectl create token <serviceaccount> --audience {AUDIENCE})",
    CHALLENGE,
)
TOKEN_TOO_LONG: Final = answers.error(
    401, "UnrecognizedClientException", f"the bearer token is longer than {MAX_TOKEN} bytes"
)


#: A route that asks for a token, on an activator that checks none (its invoke auth is
#: ``none``): served to nobody rather than to everybody.
UNCHECKED: Final = answers.error(
    500,
    "ServiceException",
    "this route's Trigger asks for auth: ServiceAccountToken, and this activator checks no "
    "tokens (the chart's activator.invoke.auth is none): it serves the route to nobody",
)


def invalid(reason: str) -> answers.Answer:
    return answers.error(
        401,
        "UnrecognizedClientException",
        f"the bearer token is not valid for the audience '{AUDIENCE}': {reason or 'refused'}",
        CHALLENGE,
    )


def denied(identity: Identity, function: stats.FunctionKey, reason: str) -> answers.Answer:
    message = (
        f"User: {identity.username} is not authorized to perform: {VERB} on resource: "
        f"{RESOURCE}.{GROUP} {function.namespace}/{function.name} (bind the ClusterRole "
        f"kfn-invoker, or a role with '{VERB}' on '{RESOURCE}' in '{GROUP}', to it in "
        f"namespace {function.namespace})"
    )
    if reason:
        message += f": {reason}"
    return answers.error(403, "AccessDeniedException", message)


def unavailable(reason: str) -> answers.Answer:
    return answers.error(
        503,
        "ServiceException",
        f"the activator could not check the caller's token: {reason}",
        answers.RETRY_AFTER,
    )


def bearer(authorization: bytes) -> str | Verdict:
    """The token of an ``Authorization`` header value, or the refusal of its absence."""
    scheme, _, token = authorization.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return Verdict(False, NO_TOKEN)
    if len(token) > MAX_TOKEN:
        return Verdict(False, TOKEN_TOO_LONG)
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        return Verdict(False, invalid("not ASCII"))


# --- deciding --------------------------------------------------------------------------------


class Recent:
    """The last cached decision one client connection was given, and for what question.

    A client sends one token on a connection, mostly for one function. Seeing that a request
    asks the same question again costs a comparison of the header, where looking the
    decision up costs reading the header, hashing the token and keeping the cache's order
    (about as much as the rest of the authorisation together). The decision is reused only
    until it expires in the cache (:attr:`Verdict.until`), so it is revoked as soon as
    the cache's is.
    """

    __slots__ = ("authorization", "function", "verdict")

    def __init__(self) -> None:
        self.authorization = b""
        self.function: stats.FunctionKey | None = None
        self.verdict: Verdict | None = None


class Access:
    """Decides whether a bearer of a token may invoke a function (see the module doc)."""

    def __init__(
        self,
        review_token: ReviewToken,
        review_access: ReviewAccess,
        *,
        clock: Callable[[], float],
        token_ttl: float = TOKEN_TTL,
        allowed_ttl: float = ALLOWED_TTL,
        denied_ttl: float = DENIED_TTL,
        refresh_ahead: float = REFRESH_AHEAD,
        limit: int = CACHE_LIMIT,
    ) -> None:
        self.review_token = review_token
        self.review_access = review_access
        self.clock = clock
        self.token_ttl = token_ttl
        self.allowed_ttl = allowed_ttl
        self.denied_ttl = denied_ttl
        self.refresh_ahead = min(refresh_ahead, allowed_ttl / 2)
        self.tokens = reviews.TokenReviews(review_token, clock=clock, ttl=token_ttl, limit=limit)
        self.decisions: expiring.Expiring[tuple[str, stats.FunctionKey], Verdict] = (
            expiring.Expiring(limit)
        )
        self._asking: dict[tuple[str, stats.FunctionKey], asyncio.Task[Verdict]] = {}

    def cached(
        self, authorization: bytes, function: stats.FunctionKey, recent: Recent | None = None
    ) -> Verdict | None:
        """The decision without waiting, or None when the API server must be asked.

        ``recent``: the connection's last decision, reused while it holds for the same
        header and function, and replaced by the one found here. A decision due for its
        review again (:attr:`Verdict.refresh_at`) starts it here, and still answers."""
        now = self.clock()
        if recent is not None:
            known = recent.verdict
            if (
                known is not None
                and now < known.refresh_at
                and now < known.until
                and recent.authorization == authorization
                and recent.function == function
            ):
                return known
        token = bearer(authorization)
        if isinstance(token, Verdict):
            return token
        key = (token, function)
        verdict = self.decisions.get(key, now)
        if verdict is None:
            return None
        if now >= verdict.refresh_at:
            verdict = self._refresh(key, verdict)
        if recent is not None:
            recent.authorization = authorization
            recent.function = function
            recent.verdict = verdict
        return verdict

    def _refresh(self, key: tuple[str, stats.FunctionKey], verdict: Verdict) -> Verdict:
        """Review an allowed decision again before it expires; until the answer, it answers
        as it is, once: the cache keeps a copy that starts no second review."""
        kept = Verdict(verdict.allowed, verdict.refusal, verdict.until)
        self.decisions.put(key, kept, verdict.until)
        if key not in self._asking:
            self._ask(key)
        return kept

    def _ask(self, key: tuple[str, stats.FunctionKey]) -> asyncio.Task[Verdict]:
        """Review ``key`` in a task of its own: a caller that goes away does not end the
        others' review, and a refresh has no caller at all."""
        asking = asyncio.get_running_loop().create_task(self._review(*key))
        self._asking[key] = asking

        def done(task: asyncio.Task[Verdict]) -> None:
            self._asking.pop(key, None)
            if not task.cancelled() and task.exception() is not None:
                logger.error("reviewing a bearer token failed", exc_info=task.exception())

        asking.add_done_callback(done)
        return asking

    async def decide(self, authorization: bytes, function: stats.FunctionKey) -> Verdict:
        """The decision, asking the API server when it is not cached; concurrent callers
        with one question share one review."""
        known = self.cached(authorization, function)
        if known is not None:
            return known
        token = bearer(authorization)
        assert isinstance(token, str)  # cached() answered every header without one
        key = (token, function)
        asking = self._asking.get(key) or self._ask(key)
        return await asyncio.shield(asking)

    async def _review(self, token: str, function: stats.FunctionKey) -> Verdict:
        try:
            identity = await self.tokens.review(token)
        except ReviewFailedError as exc:
            logger.warning("reviewing a bearer token failed: %s", exc)
            return Verdict(False, unavailable(str(exc)))
        if isinstance(identity, Invalid):
            return Verdict(False, invalid(identity.reason))
        try:
            allowed, reason = await self.review_access(identity, function)
        except ReviewFailedError as exc:
            logger.warning("reviewing access of %s failed: %s", identity.username, exc)
            return Verdict(False, unavailable(str(exc)))
        now = self.clock()
        if allowed:
            until = tokens.until(identity, now, self.allowed_ttl)
            # Reviewed again ahead only if that could keep it longer: not at the token's end.
            renewable = identity.expires is None or identity.expires > until
            refresh_at = until - self.refresh_ahead if renewable else math.inf
            verdict = Verdict(True, until=until, refresh_at=refresh_at)
        else:
            until = now + self.denied_ttl
            verdict = Verdict(False, denied(identity, function, reason), until)
        self.decisions.put((token, function), verdict, until)
        return verdict
