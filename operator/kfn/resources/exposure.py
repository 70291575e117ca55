"""Routes from the cluster's edge to the activator: Gateway API ``HTTPRoute``s, or ``Ingress``.

An HTTP Trigger with a ``host`` and a Function with ``spec.url`` are answered by the activator's
public door; what brings the internet to that door is the cluster's own Gateway (or Ingress
controller), which the cluster admin names in the chart. kfn writes, per Trigger or Function URL:

* **Gateway API** (``mode: gateway``): an ``HTTPRoute`` in the Trigger's (or Function's)
  namespace, attached to the admin's HTTPS listener, whose backend is the activator's public
  Service in kfn's namespace — a reference across namespaces, which Gateway API admits only
  with a ``ReferenceGrant`` there. The Gateway's own ``allowedRoutes`` decide which namespaces
  may attach to which listener, and a grant per namespace decides which may reach the
  activator: kfn writes one for each namespace with routes when the admin lets it
  (``grantRoutes``), or the admin writes them. A second ``HTTPRoute`` on the admin's HTTP
  listener redirects to HTTPS. A Trigger may name a listener of its own choice when the admin
  allows it; its route then attaches there alone.
* **Ingress** (``mode: ingress``, for clusters without Gateway API): an ``Ingress`` in kfn's
  namespace, since an Ingress reaches only Services of its own namespace; which namespace may
  route which host is decided by :func:`kfn.api.routes.decide`, as for the activator.

The route's fate is read back from its status (:func:`route_verdict`, :func:`ingress_verdict`)
into the owner's conditions, with the Gateway's own reason. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from kfn.api import function as function_api
from kfn.api import meta, web
from kfn.api import trigger as trigger_api
from kfn.resources import objects

GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
GATEWAY_API_VERSION: Final = f"{GATEWAY_GROUP}/v1"
REFERENCE_GRANT_API_VERSION: Final = f"{GATEWAY_GROUP}/v1beta1"
INGRESS_API_VERSION: Final = "networking.k8s.io/v1"

LABEL_TRIGGER: Final = "kfn.dev/trigger"
LABEL_ROUTE_OF: Final = "kfn.dev/route-of"
"""``Trigger`` or ``Function``: what a route kfn wrote serves."""
LABEL_NAMESPACE: Final = "kfn.dev/namespace"
"""On Ingresses and grants in kfn's namespace: the namespace they serve."""

ANNOTATION_CERT_ISSUER: Final = "cert-manager.io/issuer"
ANNOTATION_CERT_CLUSTER_ISSUER: Final = "cert-manager.io/cluster-issuer"

Mode = Literal["gateway", "ingress", "none"]


@dataclasses.dataclass(frozen=True)
class Listener:
    """A Gateway and, optionally, one of its listeners."""

    namespace: str
    name: str
    section: str = ""

    def parent_ref(self) -> dict[str, str]:
        ref = {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": self.namespace}
        ref["name"] = self.name
        if self.section:
            ref["sectionName"] = self.section
        return ref

    def describe(self) -> str:
        where = f"Gateway {self.namespace}/{self.name}"
        return f"{where}, listener {self.section}" if self.section else where


@dataclasses.dataclass(frozen=True)
class Backend:
    """The activator's public Service, which every route forwards to."""

    namespace: str
    name: str
    port: int


@dataclasses.dataclass(frozen=True)
class Ingress:
    class_name: str = ""
    tls_secret: str = ""
    """One Secret for every Ingress: a wildcard certificate the admin manages."""
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def issued(self) -> bool:
        """Whether cert-manager issues each Ingress's certificate (its annotations ask)."""
        return any(
            key in (ANNOTATION_CERT_ISSUER, ANNOTATION_CERT_CLUSTER_ISSUER)
            for key in self.annotations
        )

    def secret_for(self, ingress_name: str) -> str:
        """The TLS Secret of one Ingress: the admin's shared one, else, when cert-manager
        issues certificates, one per Ingress (its shim makes a Certificate per Secret, for the
        first Ingress naming it only); empty for none."""
        if self.tls_secret:
            return self.tls_secret
        return f"{ingress_name}-tls" if self.issued else ""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The chart's ``exposure`` values (passed to the operator as ``KFN_EXPOSURE``)."""

    mode: Mode
    backend: Backend
    https: Listener | None = None
    """The admin's Gateway and its HTTPS listener: where routes attach."""
    http_section: str = ""
    """The same Gateway's plain HTTP listener, which redirects to HTTPS; none when empty."""
    allow_trigger_listeners: bool = False
    grant_routes: bool = True
    scheme: str = "https"
    port: int = 443
    """What clients use, for the URLs kfn shows (the Gateway's listener may sit behind a load
    balancer or a node port)."""
    function_url_domain: str = ""
    function_url_template: str = web.DEFAULT_HOST_TEMPLATE
    ingress: Ingress = dataclasses.field(default_factory=Ingress)

    @property
    def function_urls(self) -> bool:
        return self.mode != "none" and bool(self.function_url_domain)

    def url(self, host: str, prefix: str = "/") -> str:
        default = {"https": 443, "http": 80}.get(self.scheme)
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}{prefix}"

    def function_url_host(self, fn_name: str, namespace: str) -> str | None:
        return web.url_host(
            self.function_url_template,
            function=fn_name,
            namespace=namespace,
            domain=self.function_url_domain,
        )


def settings_from_json(text: str) -> Settings | None:
    """The chart's ``KFN_EXPOSURE``; None when unset (nothing is exposed). ValueError names
    what is wrong, and the operator refuses to start with it."""
    if not text.strip():
        return None
    try:
        raw = json.loads(text)
        mode = raw.get("mode", "none")
        if mode not in ("gateway", "ingress", "none"):
            raise ValueError(f"mode must be gateway, ingress or none, not {mode!r}")
        backend = Backend(
            namespace=str(raw["backend"]["namespace"]),
            name=str(raw["backend"]["name"]),
            port=int(raw["backend"]["port"]),
        )
        gateway = raw.get("gateway") or {}
        https = None
        if mode == "gateway":
            if not gateway.get("name") or not gateway.get("namespace"):
                raise ValueError("gateway mode needs gateway.name and gateway.namespace")
            https = Listener(
                str(gateway["namespace"]),
                str(gateway["name"]),
                str(gateway.get("httpsListener") or ""),
            )
        ingress = raw.get("ingress") or {}
        urls = raw.get("functionUrls") or {}
        template = web.check_host_template(
            str(urls.get("hostTemplate") or web.DEFAULT_HOST_TEMPLATE)
        )
        return Settings(
            mode=mode,
            backend=backend,
            https=https,
            http_section=str(gateway.get("httpListener") or ""),
            allow_trigger_listeners=bool(gateway.get("allowTriggerListeners", False)),
            grant_routes=bool(gateway.get("grantRoutes", True)),
            scheme=str(raw.get("scheme") or "https"),
            port=int(raw.get("port") or 443),
            function_url_domain=str(urls.get("domain") or "").lower(),
            function_url_template=template,
            ingress=Ingress(
                class_name=str(ingress.get("className") or ""),
                tls_secret=str(ingress.get("tlsSecret") or ""),
                annotations={str(k): str(v) for k, v in (ingress.get("annotations") or {}).items()},
            ),
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"KFN_EXPOSURE is not what the chart writes: {exc!r}") from exc


# --- what is routed ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Exposed:
    """One thing kfn routes from the edge: a Trigger's host and prefix, or a Function URL."""

    kind: Literal["Trigger", "Function"]
    namespace: str
    name: str
    uid: str
    host: str
    prefix: str
    listener: Listener | None
    """The Trigger's own choice of listener (allowed by the admin), else None: the admin's."""

    @property
    def route_name(self) -> str:
        return f"kfn-{'trigger' if self.kind == 'Trigger' else 'url'}-{self.name}"

    @property
    def redirect_name(self) -> str:
        return f"{self.route_name}-redirect"

    def owner(self) -> objects.OwnerReference:
        return {
            "apiVersion": meta.API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def labels(self) -> dict[str, str]:
        key = LABEL_TRIGGER if self.kind == "Trigger" else objects.LABEL_FUNCTION
        return {
            objects.LABEL_MANAGED_BY: objects.MANAGER,
            LABEL_ROUTE_OF: self.kind,
            key: self.name,
        }


def of_trigger(trigger: trigger_api.Trigger) -> Exposed | None:
    """What an HTTP Trigger with a host asks to expose; None for other Triggers (a Trigger
    without a host is served on the activator's in-cluster default host only)."""
    http = trigger.spec.http
    if http is None or http.host is None:
        return None
    listener = None
    if http.gateway is not None:
        listener = Listener(
            http.gateway.namespace or trigger.metadata.namespace,
            http.gateway.name,
            http.gateway.section_name or "",
        )
    return Exposed(
        "Trigger",
        trigger.metadata.namespace,
        trigger.metadata.name,
        trigger.metadata.uid or "",
        http.host,
        http.path_prefix,
        listener,
    )


def of_function(fn: function_api.Function, settings: Settings) -> Exposed | None:
    """A Function URL's route; None without ``spec.url``, Function URLs or a valid host."""
    if fn.spec.url is None or not settings.function_urls:
        return None
    host = settings.function_url_host(fn.metadata.name, fn.metadata.namespace)
    if host is None:
        return None
    return Exposed(
        "Function", fn.metadata.namespace, fn.metadata.name, fn.metadata.uid or "", host, "/", None
    )


# --- Gateway API ------------------------------------------------------------------------------


def listener_for(exposed: Exposed, settings: Settings) -> Listener | None:
    """Where the route attaches: the Trigger's choice when the admin allows it, else the
    admin's HTTPS listener."""
    if exposed.listener is not None and settings.allow_trigger_listeners:
        return exposed.listener
    return settings.https


def trigger_listener_refused(exposed: Exposed, settings: Settings) -> str | None:
    """Why a Trigger's own choice of listener is not honoured, if it is not."""
    if exposed.listener is None or settings.allow_trigger_listeners:
        return None
    return (
        f"the Trigger names {exposed.listener.describe()}, but the cluster admin does not let "
        "Triggers choose their Gateway (chart value exposure.gateway.allowTriggerListeners); "
        "remove spec.http.gateway to use the cluster's Gateway"
    )


def _metadata(exposed: Exposed, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": exposed.namespace,
        "labels": exposed.labels(),
        "ownerReferences": [exposed.owner()],
    }


def _path_match(prefix: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": prefix}}


def build_routes(exposed: Exposed, settings: Settings) -> list[dict[str, Any]]:
    """The ``HTTPRoute``s of one exposed route: forward on the HTTPS listener, and redirect
    to HTTPS on the admin's HTTP listener (not for a listener the Trigger chose)."""
    listener = listener_for(exposed, settings)
    if listener is None:
        return []
    backend = settings.backend
    routes: list[dict[str, Any]] = [
        {
            "apiVersion": GATEWAY_API_VERSION,
            "kind": "HTTPRoute",
            "metadata": _metadata(exposed, exposed.route_name),
            "spec": {
                "parentRefs": [listener.parent_ref()],
                "hostnames": [exposed.host],
                "rules": [
                    {
                        "matches": [_path_match(exposed.prefix)],
                        "backendRefs": [
                            {
                                "group": "",
                                "kind": "Service",
                                "namespace": backend.namespace,
                                "name": backend.name,
                                "port": backend.port,
                            }
                        ],
                    }
                ],
            },
        }
    ]
    if listener is settings.https and settings.https is not None and settings.http_section:
        http = dataclasses.replace(settings.https, section=settings.http_section)
        redirect: dict[str, Any] = {"type": "RequestRedirect"}
        redirect["requestRedirect"] = {"scheme": "https", "statusCode": 301}
        if settings.scheme == "https" and settings.port != 443:
            redirect["requestRedirect"]["port"] = settings.port
        routes.append(
            {
                "apiVersion": GATEWAY_API_VERSION,
                "kind": "HTTPRoute",
                "metadata": _metadata(exposed, exposed.redirect_name),
                "spec": {
                    "parentRefs": [http.parent_ref()],
                    "hostnames": [exposed.host],
                    "rules": [{"matches": [_path_match(exposed.prefix)], "filters": [redirect]}],
                },
            }
        )
    return routes


def grant_name(namespace: str) -> str:
    return f"kfn-routes-from-{namespace}"


def build_grant(namespace: str, settings: Settings) -> dict[str, Any]:
    """The ``ReferenceGrant`` in kfn's namespace that lets ``namespace``'s HTTPRoutes reach the
    activator's public Service (and nothing else of kfn's)."""
    backend = settings.backend
    return {
        "apiVersion": REFERENCE_GRANT_API_VERSION,
        "kind": "ReferenceGrant",
        "metadata": {
            "name": grant_name(namespace),
            "namespace": backend.namespace,
            "labels": {objects.LABEL_MANAGED_BY: objects.MANAGER, LABEL_NAMESPACE: namespace},
        },
        "spec": {
            "from": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": namespace}],
            "to": [{"group": "", "kind": "Service", "name": backend.name}],
        },
    }


# --- Ingress ----------------------------------------------------------------------------------


def ingress_name(exposed: Exposed) -> str:
    """Unique in kfn's namespace, whatever the namespaces' and names' lengths."""
    digest = hashlib.sha256(f"{exposed.kind}/{exposed.namespace}/{exposed.name}".encode())
    base = f"kfn-{exposed.namespace}-{exposed.name}"[:50].rstrip("-")
    return f"{base}-{digest.hexdigest()[:8]}"


def build_ingress(exposed: Exposed, settings: Settings) -> dict[str, Any]:
    """An ``Ingress`` in kfn's namespace for one exposed route, with TLS when the admin names
    a certificate Secret (or cert-manager makes one from the annotations)."""
    backend = settings.backend
    ingress = settings.ingress
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": exposed.host,
                "http": {
                    "paths": [
                        {
                            "path": exposed.prefix,
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": backend.name, "port": {"number": backend.port}}
                            },
                        }
                    ]
                },
            }
        ]
    }
    if ingress.class_name:
        spec["ingressClassName"] = ingress.class_name
    secret = ingress.secret_for(ingress_name(exposed))
    if secret:
        spec["tls"] = [{"hosts": [exposed.host], "secretName": secret}]
    labels = {**exposed.labels(), LABEL_NAMESPACE: exposed.namespace}
    metadata: dict[str, Any] = {
        "name": ingress_name(exposed),
        "namespace": backend.namespace,
        "labels": labels,
    }
    if ingress.annotations:
        metadata["annotations"] = dict(ingress.annotations)
    return {
        "apiVersion": INGRESS_API_VERSION,
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }


# --- which listener can serve a host ---------------------------------------------------------

NO_MATCHING_HOSTNAME: Final = "NoMatchingListenerHostname"

#: ``Exposed`` reasons only a change of a Gateway ends: its creation, or a listener that
#: takes the host. The owner's own events may be far off (a function at zero changes
#: nothing), so Gateway events look at such owners again.
WAITING_FOR_GATEWAY: Final = frozenset({"GatewayNotFound", NO_MATCHING_HOSTNAME})


def gateway_event_concerns(status: Mapping[str, Any] | None, *, deleted: bool) -> bool:
    """Whether an owner with this ``status`` is looked at again after a Gateway event: one
    waiting for a Gateway, or, when a Gateway went, any owner kfn exposed or tried to."""
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") != function_api.ConditionType.EXPOSED:
            continue
        return deleted or (
            cond.get("status") == "False" and cond.get("reason") in WAITING_FOR_GATEWAY
        )
    return False


"""Gateway API's own reason, used when kfn sees it before writing a route."""


def hostname_matches(pattern: str, host: str) -> bool:
    """Gateway API's listener hostname match: exact, or ``*.`` and a suffix (any depth)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def unmatched_host(gateway: Mapping[str, Any], listener: Listener, host: str) -> str | None:
    """Why no listener of ``gateway`` that the route would attach to serves ``host``, if none
    does (a listener without a hostname serves every host); None when one may."""
    listeners = (gateway.get("spec") or {}).get("listeners") or []
    candidates = [
        entry
        for entry in listeners
        if not listener.section or entry.get("name") == listener.section
    ]
    if not candidates:
        return None  # the Gateway says so itself (NoMatchingParent) in the route's status
    hostnames = [str(entry.get("hostname") or "") for entry in candidates]
    if any(not pattern or hostname_matches(pattern, host) for pattern in hostnames):
        return None
    return (
        f"{listener.describe()} serves {', '.join(sorted(set(hostnames)))}, not {host}: the "
        "route is served inside the cluster only (through the activator); use a host under "
        "the Gateway's domain to reach it from outside"
    )


# --- reading the route's fate back -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: meta.ConditionStatus
    reason: str
    message: str


def _condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def _same_parent(ref: Mapping[str, Any], listener: Listener, route_namespace: str) -> bool:
    return (
        ref.get("name") == listener.name
        and (ref.get("namespace") or route_namespace) == listener.namespace
        and (ref.get("sectionName") or "") == listener.section
    )


def route_verdict(
    route: Mapping[str, Any] | None,
    listener: Listener,
    *,
    gateway: Mapping[str, Any] | None,
    url: str,
) -> Verdict:
    """What the Gateway said of the route, in words for the owner's ``Exposed`` condition."""
    where = listener.describe()
    if gateway is None:
        return Verdict(
            "False",
            "GatewayNotFound",
            f"{where} does not exist; the cluster admin names the Gateway in the chart "
            "(exposure.gateway)",
        )
    if route is None:
        return Verdict("Unknown", "Exposing", f"writing the HTTPRoute for {where}")
    namespace = (route.get("metadata") or {}).get("namespace", "")
    generation = (route.get("metadata") or {}).get("generation")
    parents = (route.get("status") or {}).get("parents") or []
    mine = next(
        (p for p in parents if _same_parent(p.get("parentRef") or {}, listener, namespace)), None
    )
    if mine is None:
        return Verdict(
            "Unknown",
            "Exposing",
            f"waiting for {where} to accept the route (no answer from its controller yet)",
        )
    conds = mine.get("conditions") or []
    accepted = _condition(conds, "Accepted")
    resolved = _condition(conds, "ResolvedRefs")
    for cond, what in ((accepted, "refused the route"), (resolved, "cannot reach the activator")):
        if cond is not None and cond.get("status") == "False":
            reason = str(cond.get("reason") or "Refused")
            hint = ""
            if reason == "RefNotPermitted":
                hint = (
                    " (a ReferenceGrant in the activator's namespace must let this namespace's "
                    "HTTPRoutes reach its Service; ask the cluster admin)"
                )
            return Verdict("False", reason, f"{where} {what}: {cond.get('message', '')}{hint}")
    stale = accepted is not None and accepted.get("observedGeneration") not in (None, generation)
    if accepted is None or accepted.get("status") != "True" or stale:
        return Verdict("Unknown", "Exposing", f"waiting for {where} to accept the route")
    addresses = [
        str(a.get("value"))
        for a in ((gateway.get("status") or {}).get("addresses") or [])
        if a.get("value")
    ]
    at = f" (Gateway address {', '.join(addresses)})" if addresses else ""
    return Verdict("True", "Exposed", f"served at {url} through {where}{at}")


def ingress_verdict(ingress: Mapping[str, Any] | None, url: str) -> Verdict:
    """An Ingress has no acceptance in its status; its controller publishing an address is the
    only sign it serves."""
    if ingress is None:
        return Verdict("Unknown", "Exposing", "writing the Ingress")
    balancers = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addresses = [str(b.get("ip") or b.get("hostname")) for b in balancers if b]
    if not addresses:
        return Verdict(
            "Unknown",
            "Exposing",
            "waiting for the Ingress controller to publish an address for the Ingress "
            f"{ingress_name_of(ingress)}",
        )
    return Verdict(
        "True", "Exposed", f"served at {url} through an Ingress at {', '.join(addresses)}"
    )


def ingress_name_of(ingress: Mapping[str, Any]) -> str:
    metadata = ingress.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
