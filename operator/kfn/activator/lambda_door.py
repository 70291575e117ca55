"""Lambda's API served: one request, held whole, authenticated, authorised, then answered.

The exchange holds a Lambda API request's body whole (at most
:data:`~kfn.activator.lambda_api.SYNC_PAYLOAD_LIMIT`: a signature covers the body, and an
invoke's payload must be JSON) and hands it here with its method, URL and every header.
Then, in order:

1. **Who is calling.** ``Authorization: AWS4-HMAC-SHA256 ...`` is checked against the access
   keys of every namespace (:mod:`~kfn.activator.sigv4`, :mod:`~kfn.activator.lambda_keys`):
   the ServiceAccount the matching key names is the caller. ``Authorization: Bearer`` is a
   token, reviewed as on the invoke API (:mod:`~kfn.activator.access`'s token reviews).
2. **Which namespace.** The URL's prefix (``/{namespace}/2015-03-31/...``), else the caller's
   ServiceAccount's namespace.
3. **May it.** A SubjectAccessReview for the caller: ``invoke`` on the function for Invoke,
   ``get`` for GetFunction, ``list`` in the namespace for ListFunctions, on ``functions`` in
   ``kfn.dev``. Decisions are cached as the invoke API's are (allowed for
   :data:`~kfn.activator.access.ALLOWED_TTL`, refused for
   :data:`~kfn.activator.access.DENIED_TTL`).
4. **The operation.** Invoke goes to a pod through :func:`kfn.activator.call.call` (the
   activator's buffered invocation: a slot, queueing at zero, the function's bounds), with
   ``Kfn-Log-Type: Tail`` when the caller asked for the log and ``Kfn-Client-Context`` when it
   sent one; ``Event`` is stored for delivery as the invoke API's are; ``DryRun`` stops after
   step 3. GetFunction and ListFunctions answer from the watched Functions.

An activator whose invoke door checks nothing (run alone, for development) skips step 3 and
takes a request without credentials as the URL's namespace's, else ``default``'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

from kfn import expiring, stats
from kfn.activator import (
    access,
    answers,
    call,
    context,
    events,
    lambda_api,
    qualifiers,
    sigv4,
)

logger = logging.getLogger(__name__)

#: Whether RBAC lets an identity act on a resource (SubjectAccessReview attributes).
Review = Callable[[access.Identity, dict[str, str]], Awaitable[tuple[bool, str]]]
#: The facts of the Functions of a namespace (the watched Function objects).
Describe = Callable[[str], Sequence[lambda_api.Facts]]

_SA_PREFIX: Final = "system:serviceaccount:"

MISSING_CREDENTIALS: Final = lambda_api.error(
    403,
    "MissingAuthenticationTokenException",
    "Missing Authentication Token: sign the request (SigV4) with an access key from a "
    "namespace's kfn-lambda-access-keys Secret, or send 'Authorization: Bearer <token>'",
)


class Keys(Protocol):
    """The access keys holding an access key id (:class:`lambda_keys.AccessKeys`)."""

    def holding(self, access_key_id: str) -> tuple[sigv4.Key, ...]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    identity: access.Identity | None
    #: The namespace of the caller's ServiceAccount, "" when it is none.
    namespace: str
    #: The region a SigV4 request was signed for, "" otherwise.
    region: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    """One request as far as it is known: who calls, and in which namespace."""

    ctx: context.Context
    checks: access.Access | None
    request: lambda_api.Request
    call: lambda_api.Call
    caller: Caller
    namespace: str
    region: str


def service_account_identity(namespace: str, name: str) -> access.Identity:
    """The identity the API server gives a ServiceAccount's token (its username and groups)."""
    return access.Identity(
        username=f"{_SA_PREFIX}{namespace}:{name}",
        groups=(
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ),
    )


def namespace_of(identity: access.Identity) -> str:
    if identity.username.startswith(_SA_PREFIX):
        return identity.username[len(_SA_PREFIX) :].split(":", 1)[0]
    return ""


class LambdaApi:
    """Serves Lambda API requests on the invoke door (see the module doc)."""

    def __init__(
        self,
        *,
        keys: Keys,
        review: Review | None,
        describe: Describe | None = None,
        region: str = lambda_api.DEFAULT_REGION,
        account: str = lambda_api.DEFAULT_ACCOUNT,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.review = review
        self.describe = describe
        self.region = region
        self.account = account
        self.wall_clock = wall_clock
        self.clock = clock
        self.decisions: expiring.Expiring[tuple[str, str, str, str], tuple[bool, str]] = (
            expiring.Expiring()
        )

    async def serve(
        self, ctx: context.Context, checks: access.Access | None, request: lambda_api.Request
    ) -> answers.Answer:
        answer = await self._serve(ctx, checks, request)
        return lambda_api.with_ids(answer, request.request_id)

    async def _serve(
        self, ctx: context.Context, checks: access.Access | None, request: lambda_api.Request
    ) -> answers.Answer:
        parsed = lambda_api.parse(request.method, request.url)
        if isinstance(parsed, answers.Answer):
            return parsed
        caller = await self._caller(checks, request)
        if isinstance(caller, answers.Answer):
            return caller
        namespace = parsed.namespace or caller.namespace
        if not namespace and caller.identity is not None:
            return lambda_api.invalid(
                f"{caller.identity.username} is not a ServiceAccount: put the namespace in "
                "the endpoint URL's path (http://<activator>/<namespace>)"
            )
        scope = _Scope(
            ctx,
            checks,
            request,
            parsed,
            caller,
            namespace or "default",
            caller.region or self.region,
        )
        if parsed.operation == "ListFunctions":
            return await self._list(scope)
        return await self._named(scope)

    async def _list(self, scope: _Scope) -> answers.Answer:
        refusal = await self._authorize(scope, "list", "")
        if refusal is not None:
            return refusal
        facts = self._facts(scope.ctx, scope.namespace)
        page = lambda_api.list_page(facts, scope.call.query, scope.region, self.account)
        if isinstance(page, answers.Answer):
            return page
        return lambda_api.json_answer(page, scope.request.request_id)

    async def _named(self, scope: _Scope) -> answers.Answer:
        """GetFunction, GetFunctionConfiguration and Invoke: one function, by name."""
        call_ = scope.call
        target = lambda_api.function_name(call_.function_name, call_.query.get("Qualifier"))
        if isinstance(target, answers.Answer):
            return target
        verb = "invoke" if call_.operation == "Invoke" else "get"
        refusal = await self._authorize(scope, verb, target.name)
        if refusal is None and call_.operation != "Invoke":
            refusal = lambda_api.qualifier_refusal(target, scope.region, self.account)
        if refusal is not None:
            return refusal
        if call_.operation == "Invoke":
            function = stats.FunctionKey(scope.namespace, target.name)
            if target.qualifier != lambda_api.LATEST:
                resolved = qualifiers.resolve(
                    scope.ctx.qualifiers, function, target.qualifier, qualifiers.draw()
                )
                if isinstance(resolved, qualifiers.NotFound):
                    return lambda_api.not_found(
                        "Function not found: "
                        + lambda_api.arn(scope.region, self.account, target.name, target.qualifier)
                    )
                function = resolved
            return await self._invoke(scope.ctx, scope.request, function, scope.region)
        found = [f for f in self._facts(scope.ctx, scope.namespace) if f.name == target.name]
        if not found:
            return lambda_api.function_missing(scope.region, self.account, target.name)
        if call_.operation == "GetFunction":
            body = lambda_api.get_function(found[0], scope.region, self.account)
        else:
            body = lambda_api.configuration(found[0], scope.region, self.account)
        return lambda_api.json_answer(body, scope.request.request_id)

    def _facts(self, ctx: context.Context, namespace: str) -> Sequence[lambda_api.Facts]:
        if self.describe is not None:
            return self.describe(namespace)
        # An activator without watched Functions (run alone): what its entries say.
        return [
            lambda_api.Facts(
                namespace=key.namespace,
                name=key.name,
                timeout_s=max(1, entry.limits.timeout_ms // 1000),
                state="Active",
            )
            for key, entry in ctx.functions.items()
            if key.namespace == namespace and not key.version  # a version is no function
        ]

    def _invoke_checked(
        self,
        ctx: context.Context,
        request: lambda_api.Request,
        function: stats.FunctionKey,
        region: str,
    ) -> tuple[lambda_api.InvokeOptions, context.FunctionEntry] | answers.Answer:
        """Invoke's headers, function and payload, or Lambda's refusal of the first wrong."""
        options = lambda_api.invoke_options(request.headers)
        if isinstance(options, answers.Answer):
            return options
        entry = ctx.functions.get(function)
        if entry is None:
            return lambda_api.function_missing(region, self.account, function.name)
        return lambda_api.payload_refusal(request.body) or (options, entry)

    async def _invoke(
        self,
        ctx: context.Context,
        request: lambda_api.Request,
        function: stats.FunctionKey,
        region: str,
    ) -> answers.Answer:
        checked = self._invoke_checked(ctx, request, function, region)
        if isinstance(checked, answers.Answer):
            return checked
        options, entry = checked
        if options.invocation_type == "DryRun":
            return answers.Answer(204, b"", b"", entry.executed_version)
        if options.invocation_type == "Event":
            return await _event(ctx, function, request.body)
        extra = b""
        if options.log_tail:
            extra += b"Kfn-Log-Type: Tail\r\n"
        if options.client_context:
            extra += b"Kfn-Client-Context: %s\r\n" % options.client_context.encode("latin-1")
        started = time.perf_counter()
        reply = await call.call(
            entry.throttler,
            function.name,
            request.request_id.decode(),
            request.body,
            timeout_s=entry.timeout,
            queue_timeout_s=entry.queue_timeout,
            invocation_type=b"RequestResponse",
            extra_headers=extra,
        )
        outcome = reply.outcome
        entry.metrics.observe_request(outcome.status, time.perf_counter() - started)
        reply.record(entry.metrics)
        body = outcome.body
        if outcome.status == 504 and not body.startswith(b"{"):
            # The activator's own bound passed (the runtime did not answer its time-out).
            body = answers.timed_out(entry.limits.timeout_ms).body
        result = lambda_api.Result(outcome.status, body, outcome.function_error, reply.log_result)
        return lambda_api.invoke_answer(result, request.request_id, entry.executed_version)

    # --- who, and may they -------------------------------------------------------------------

    async def _caller(
        self, checks: access.Access | None, request: lambda_api.Request
    ) -> Caller | answers.Answer:
        authorization = b""
        for name, value in request.headers:
            if name.lower() == b"authorization":
                authorization = value
        if sigv4.is_sigv4(authorization):
            return self._signed(request, authorization)
        if checks is None:
            return Caller(None, "")
        if not authorization.strip():
            return MISSING_CREDENTIALS
        return await _bearer(checks, authorization)

    def _signed(self, request: lambda_api.Request, authorization: bytes) -> Caller | answers.Answer:
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
        parsed = sigv4.parse_authorization(authorization.decode("latin-1"))
        candidates = (
            self.keys.holding(parsed.access_key_id)
            if isinstance(parsed, sigv4.Authorization)
            else ()
        )
        verdict = sigv4.verify(
            request.method.decode("latin-1"),
            request.url.decode("latin-1"),
            headers,
            request.body,
            now=self.wall_clock(),
            candidates=candidates,
        )
        if isinstance(verdict, sigv4.Refused):
            status = 400 if verdict.error_type == "IncompleteSignatureException" else 403
            return lambda_api.error(status, verdict.error_type, verdict.message)
        key = verdict.key
        return Caller(
            service_account_identity(key.namespace, key.service_account),
            key.namespace,
            verdict.region,
        )

    async def _authorize(self, scope: _Scope, verb: str, name: str) -> answers.Answer | None:
        """None when RBAC lets the caller ``verb`` the function ``name`` (the namespace's
        functions when ``name`` is empty); else Lambda's AccessDeniedException."""
        if scope.checks is None or self.review is None:
            return None
        identity = scope.caller.identity
        if identity is None:
            return MISSING_CREDENTIALS
        try:
            allowed, reason = await self._decide(identity, scope.namespace, verb, name)
        except access.ReviewFailedError as exc:
            return lambda_api.error(
                503, "ServiceException", f"could not check access: {exc}", kind="Service"
            )
        if allowed:
            return None
        return denied(identity, scope.namespace, verb, name, reason)

    async def _decide(
        self, identity: access.Identity, namespace: str, verb: str, name: str
    ) -> tuple[bool, str]:
        """RBAC's decision, cached (allowed for ALLOWED_TTL, refused for DENIED_TTL)."""
        assert self.review is not None
        key = (identity.username + "\0" + ",".join(identity.groups), namespace, verb, name)
        decided = self.decisions.get(key, self.clock())
        if decided is None:
            attributes = {
                "namespace": namespace,
                "verb": verb,
                "group": access.GROUP,
                "resource": access.RESOURCE,
            }
            if name:
                attributes["name"] = name
            decided = await self.review(identity, attributes)
            ttl = access.ALLOWED_TTL if decided[0] else access.DENIED_TTL
            self.decisions.put(key, decided, self.clock() + ttl)
        return decided


def denied(
    identity: access.Identity, namespace: str, verb: str, name: str, reason: str
) -> answers.Answer:
    what = f"{access.RESOURCE}.{access.GROUP} " + (
        f"{namespace}/{name}" if name else f"in namespace {namespace}"
    )
    message = (
        f"User: {identity.username} is not authorized to perform: {verb} on resource: {what} "
        f"(bind a role with '{verb}' on '{access.RESOURCE}' in '{access.GROUP}' to it in "
        f"namespace {namespace}; kfn-invoker grants invoke)"
    )
    if reason:
        message += f": {reason}"
    return lambda_api.error(403, "AccessDeniedException", message)


async def _event(
    ctx: context.Context, function: stats.FunctionKey, payload: bytes
) -> answers.Answer:
    """An ``Event`` invoke: stored for delivery as the invoke API's are (256 KiB at most)."""
    if len(payload) > events.PAYLOAD_LIMIT:
        return lambda_api.error(
            413,
            "RequestTooLargeException",
            f"Request must be smaller than {events.PAYLOAD_LIMIT} bytes for the "
            "InvokeFunction operation (Event)",
        )
    accepted = await events.submit(ctx.invoker, function, payload)
    return lambda_api.event_answer(accepted)


async def _bearer(checks: access.Access, authorization: bytes) -> Caller | answers.Answer:
    """The identity a bearer token names (reviewed as on the invoke API)."""
    token = access.bearer(authorization)
    if isinstance(token, access.Verdict):
        assert token.refusal is not None
        return _relabel(token.refusal)
    try:
        identity = await checks.tokens.review(token)
    except access.ReviewFailedError as exc:
        return lambda_api.error(
            503, "ServiceException", f"could not review the token: {exc}", kind="Service"
        )
    if isinstance(identity, access.Invalid):
        return _relabel(access.invalid(identity.reason))
    return Caller(identity, namespace_of(identity))


def _relabel(answer: answers.Answer) -> answers.Answer:
    """The invoke API's refusal of a bearer token, in Lambda's API's error shape."""
    message = str(json.loads(answer.body).get("errorMessage", ""))
    return lambda_api.error(403, "UnrecognizedClientException", message)
