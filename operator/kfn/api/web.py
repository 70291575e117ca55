"""What HTTP Triggers and Function URLs share: who may call, CORS, and the Gateway they attach to.

A Function URL (``Function.spec.url``) is Lambda's: one host per function, on the domain the
cluster admin gives kfn, with an auth type and CORS settings; an HTTP Trigger with a ``host``
is API Gateway's custom domain with routes. Both are answered by the activator's public door
and reach the cluster's edge through the Gateway (or Ingress) the cluster admin names in the
chart; a Trigger may name another Gateway listener only when the admin allows it.

Pure: models, the host a Function URL gets, and the CORS decisions the activator applies.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Annotated, Final, Literal

import pydantic

from kfn.api import meta
from kfn.api.meta import Rule

HttpAuth = Literal["None", "ServiceAccountToken"]
"""Who may call an HTTP route: anyone (a Function URL's ``NONE``), or a caller whose bearer
token RBAC lets ``invoke`` the function (its ``AWS_IAM``)."""
NO_AUTH: Final = "None"
SERVICE_ACCOUNT_TOKEN: Final = "ServiceAccountToken"  # noqa: S105 - a kind of auth, no secret

AUTH_DESCRIPTION: Final = (
    "Who may call. None (the default): anyone who reaches the activator, and the function "
    "decides (as a Lambda Function URL with auth type NONE). ServiceAccountToken: only a caller "
    "sending 'Authorization: Bearer <token>' with a token for the audience kfn whose identity "
    "RBAC lets 'invoke' the function (verb invoke on functions.kfn.dev, as on the invoke API; "
    "the Function URL's AWS_IAM); others are answered 401 or 403. The token is not passed on "
    "to the function."
)

HttpMethodOrAny = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"]

ORIGIN_PATTERN: Final = r"^(\*|https?://(\*\.)?[a-z0-9.-]+(:[0-9]{1,5})?)$"
"""``*``, or a scheme and host (optionally ``*.`` for any subdomain) with an optional port,
as a browser sends it in ``Origin`` (lower-case, no path)."""
HEADER_NAME_PATTERN: Final = r"^(\*|[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"
"""An HTTP field name (RFC 9110 token), or ``*``."""

Origin = Annotated[str, pydantic.Field(min_length=1, max_length=253, pattern=ORIGIN_PATTERN)]
HeaderName = Annotated[
    str, pydantic.Field(min_length=1, max_length=100, pattern=HEADER_NAME_PATTERN)
]

MAX_AGE_LIMIT: Final = 86400
SAFELISTED_METHODS: Final = frozenset({"GET", "HEAD", "POST"})


class Cors(meta.Model):
    """Cross-origin resource sharing, as a Lambda Function URL's ``Cors`` settings.

    The activator answers preflight requests (``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``) itself, without starting the function, and sets the
    ``Access-Control-*`` headers of other answers to an allowed origin, replacing any the
    function set.
    """

    allow_origins: list[Origin] = pydantic.Field(
        default_factory=list,
        max_length=100,
        description="Origins that may call: '*' for any, or 'https://example.com', "
        "'https://*.example.com' (any subdomain), 'http://localhost:3000'.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    allow_methods: list[HttpMethodOrAny] = pydantic.Field(
        default_factory=list,
        max_length=8,
        description="Methods allowed in cross-origin requests; '*' for any.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    allow_headers: list[HeaderName] = pydantic.Field(
        default_factory=list,
        max_length=100,
        description="Request headers allowed in cross-origin requests; '*' for any.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    expose_headers: list[HeaderName] = pydantic.Field(
        default_factory=list,
        max_length=100,
        description="Response headers a browser lets the calling page read.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    max_age: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=MAX_AGE_LIMIT,
        description="Seconds a browser may cache a preflight's answer (0 to 86400).",
    )
    allow_credentials: bool = pydantic.Field(
        default=False,
        description="Whether cookies and Authorization may be sent cross-origin. Browsers "
        "refuse credentials with the origin '*', so it needs explicit origins.",
    )

    __rules__ = (
        Rule(
            cel="!self.allowCredentials || !has(self.allowOrigins)"
            " || !self.allowOrigins.exists(o, o == '*')",
            message="allowCredentials needs explicit allowOrigins: browsers refuse "
            "credentials from a page when the allowed origin is '*'",
            check=lambda c: not (c.allow_credentials and "*" in c.allow_origins),
        ),
    )


SECTION_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ListenerRef(meta.Model):
    """A Gateway (Gateway API) and optionally one of its listeners."""

    name: str = pydantic.Field(
        min_length=1,
        max_length=253,
        pattern=meta.DNS1123_SUBDOMAIN_PATTERN,
        description="The Gateway.",
    )
    namespace: str | None = pydantic.Field(
        default=None,
        max_length=63,
        pattern=meta.DNS1123_LABEL_PATTERN,
        description="The Gateway's namespace; the Trigger's when unset.",
    )
    section_name: str | None = pydantic.Field(
        default=None,
        max_length=253,
        pattern=SECTION_NAME_PATTERN,
        description="The listener; every listener whose hostname matches when unset.",
    )


InvokeMode = Literal["Buffered"]
"""How the answer travels: ``Buffered`` (the whole answer at once, up to 6 MB as Lambda's).
Lambda's ``RESPONSE_STREAM`` needs response streaming in the runtimes, which kfn does not have
yet; the API server refuses it until then."""


class FunctionUrl(meta.Model):
    """A Lambda Function URL: the function's own HTTPS address on the cluster's function domain."""

    auth: HttpAuth = pydantic.Field(default=NO_AUTH, description=AUTH_DESCRIPTION)
    cors: Cors | None = pydantic.Field(default=None, description="Cross-origin resource sharing.")
    invoke_mode: InvokeMode = pydantic.Field(
        default="Buffered",
        description="Buffered: the function's whole answer is sent at once (Lambda's BUFFERED). "
        "ResponseStream is not offered yet: kfn's runtimes do not stream answers.",
    )


# --- a Function URL's host -------------------------------------------------------------------

DEFAULT_HOST_TEMPLATE: Final = "{function}-{namespace}.{domain}"
"""One DNS label per function under the admin's domain, so one wildcard certificate
(``*.<domain>``) covers every Function URL, as a Lambda Function URL is one label under
``lambda-url.<region>.on.aws``. ``{function}.{namespace}.{domain}`` (Knative's shape) is a
chart choice for admins whose certificates cover each namespace's wildcard."""
TEMPLATE_FIELDS: Final = frozenset({"function", "namespace", "domain"})
_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_host_template(template: str) -> str:
    """The template, or ValueError saying what is wrong with it (the operator and activator
    refuse to start with a broken one)."""
    fields = set(re.findall(r"{([^{}]*)}", template))
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"the Function URL host template {template!r} has unknown fields "
            f"{sorted(unknown)}; it may use {{function}}, {{namespace}} and {{domain}}"
        )
    try:
        template.format(function="f", namespace="n", domain="d")
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(
            f"the Function URL host template {template!r} is malformed: {exc}"
        ) from exc
    if not {"function", "namespace"} <= fields:
        raise ValueError(
            f"the Function URL host template {template!r} must use both {{function}} and "
            "{namespace}, so that every function in every namespace gets a host of its own"
        )
    return template


def url_host(template: str, *, function: str, namespace: str, domain: str) -> str | None:
    """A Function URL's host, or None when the name is not a valid DNS name (a label over 63
    characters: a long function name in a long namespace)."""
    host = template.format(function=function, namespace=namespace, domain=domain).lower()
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        return None
    return host


# --- CORS, as the activator applies it -------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CorsPolicy:
    """A route's CORS settings, ready for the activator's per-request decisions."""

    origins: tuple[str, ...] = ()
    methods: frozenset[str] = frozenset()
    headers: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    max_age: int | None = None
    credentials: bool = False

    @classmethod
    def of(cls, cors: Cors) -> CorsPolicy:
        return cls(
            origins=tuple(o.lower() for o in cors.allow_origins),
            methods=frozenset(m.upper() for m in cors.allow_methods),
            headers=tuple(h.lower() for h in cors.allow_headers),
            expose=tuple(cors.expose_headers),
            max_age=cors.max_age,
            credentials=cors.allow_credentials,
        )

    def allows_origin(self, origin: str) -> bool:
        origin = origin.lower()
        for allowed in self.origins:
            if allowed in ("*", origin):
                return True
            if "://*." in allowed:
                scheme, rest = allowed.split("://*.", 1)
                if origin.startswith(scheme + "://") and origin.endswith("." + rest):
                    return True
        return False

    def allows_method(self, method: str) -> bool:
        """Listed, ``*``, or CORS-safelisted (GET, HEAD, POST), which browsers allow whatever
        a preflight's answer lists."""
        method = method.upper()
        return "*" in self.methods or method in self.methods or method in SAFELISTED_METHODS

    def allows_headers(self, requested: Sequence[str]) -> bool:
        if "*" in self.headers:
            return True
        return all(h.strip().lower() in self.headers for h in requested if h.strip())

    def _origin_value(self, origin: str) -> str:
        # '*' cannot go with credentials; the request's origin is named then, and always
        # when the list is explicit, with Vary: Origin so caches keep answers apart.
        if "*" in self.origins and not self.credentials:
            return "*"
        return origin

    def preflight(self, origin: str, method: str, headers: Sequence[str]) -> dict[str, str]:
        """The headers of a preflight's answer; empty when the request is not allowed (the
        browser then refuses the call, as with Lambda)."""
        if not (
            self.allows_origin(origin)
            and self.allows_method(method)
            and self.allows_headers(headers)
        ):
            return {}
        answer = {"Access-Control-Allow-Origin": self._origin_value(origin)}
        answer["Access-Control-Allow-Methods"] = (
            method.upper() if "*" in self.methods else ", ".join(sorted(self.methods))
        )
        requested = [h.strip() for h in headers if h.strip()]
        if requested:
            answer["Access-Control-Allow-Headers"] = (
                ", ".join(requested) if "*" in self.headers else ", ".join(self.headers)
            )
        if self.max_age is not None:
            answer["Access-Control-Max-Age"] = str(self.max_age)
        if self.credentials:
            answer["Access-Control-Allow-Credentials"] = "true"
        if answer["Access-Control-Allow-Origin"] != "*":
            answer["Vary"] = "Origin"
        return answer

    def simple(self, origin: str) -> dict[str, str]:
        """The headers added to an ordinary answer to a cross-origin request; empty when the
        origin is not allowed."""
        if not self.allows_origin(origin):
            return {}
        answer = {"Access-Control-Allow-Origin": self._origin_value(origin)}
        if self.expose:
            answer["Access-Control-Expose-Headers"] = ", ".join(self.expose)
        if self.credentials:
            answer["Access-Control-Allow-Credentials"] = "true"
        if answer["Access-Control-Allow-Origin"] != "*":
            answer["Vary"] = "Origin"
        return answer


def is_preflight(method: str, origin: str, requested_method: str) -> bool:
    """An ``OPTIONS`` request with ``Origin`` and ``Access-Control-Request-Method`` (the two
    header values, empty when absent)."""
    return method.upper() == "OPTIONS" and bool(origin) and bool(requested_method)
