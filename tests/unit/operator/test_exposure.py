"""Routes at the cluster's edge: what kfn writes for the Gateway or Ingress, and how it reads
their fate back (kfn.resources.exposure, kfn.operator.exposure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kfn import kube
from kfn.api import function as function_api
from kfn.api import routes
from kfn.api import trigger as trigger_api
from kfn.operator import exposure as operator_exposure
from kfn.operator import settings, triggers
from kfn.resources import exposure

RAW: dict[str, Any] = {
    "mode": "gateway",
    "gateway": {
        "name": "edge",
        "namespace": "gw",
        "httpsListener": "https",
        "httpListener": "http",
    },
    "backend": {"namespace": "kfn-system", "name": "kfn-activator", "port": 80},
    "scheme": "https",
    "port": 443,
    "functionUrls": {"domain": "fn.example.com"},
}
SETTINGS = exposure.settings_from_json(json.dumps(RAW))
assert SETTINGS is not None


def trigger(host: str | None = "shop.example.com", **http: Any) -> trigger_api.Trigger:
    spec_http = {"pathPrefix": "/api", **http}
    if host is not None:
        spec_http["host"] = host
    return trigger_api.Trigger.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "web", "namespace": "shop", "uid": "t-uid", "generation": 1},
            "spec": {"functionRef": {"name": "hello"}, "http": spec_http},
        }
    )


def fn(url: dict[str, Any] | None = None, name: str = "hello") -> function_api.Function:
    spec: dict[str, Any] = {
        "runtime": "python3.11",
        "handler": "app.main",
        "source": {"image": "x"},
    }
    if url is not None:
        spec["url"] = url
    return function_api.Function.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": "shop", "uid": "f-uid", "generation": 2},
            "spec": spec,
        }
    )


# --- settings -------------------------------------------------------------------------------


def test_no_exposure_value_means_nothing_is_exposed() -> None:
    assert exposure.settings_from_json("") is None


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"mode": "loadbalancer"}, "mode"),
        ({"gateway": {}}, "gateway.name"),
        ({"functionUrls": {"domain": "x", "hostTemplate": "{function}.{domain}"}}, "both"),
        ({"backend": {}}, "KFN_EXPOSURE"),
    ],
)
def test_settings_the_chart_could_not_have_written_are_refused_with_what_is_wrong(
    change: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        exposure.settings_from_json(json.dumps({**RAW, **change}))


def test_a_url_names_the_port_only_when_it_is_not_the_schemes_own() -> None:
    assert SETTINGS.url("a.example.com", "/x") == "https://a.example.com/x"
    other = exposure.settings_from_json(json.dumps({**RAW, "port": 30443}))
    assert other is not None
    assert other.url("a.example.com") == "https://a.example.com:30443/"


# --- what is exposed ------------------------------------------------------------------------


def test_only_an_http_trigger_with_a_host_is_exposed() -> None:
    assert exposure.of_trigger(trigger(host=None)) is None
    exposed = exposure.of_trigger(trigger())
    assert exposed is not None
    assert (exposed.host, exposed.prefix, exposed.route_name) == (
        "shop.example.com",
        "/api",
        "kfn-trigger-web",
    )


def test_a_function_url_is_exposed_on_its_own_host_under_the_domain() -> None:
    exposed = exposure.of_function(fn(url={}), SETTINGS)
    assert exposed is not None
    assert (exposed.host, exposed.prefix, exposed.route_name) == (
        "hello-shop.fn.example.com",
        "/",
        "kfn-url-hello",
    )
    assert exposure.of_function(fn(), SETTINGS) is None


# --- the HTTPRoutes -------------------------------------------------------------------------


def test_a_trigger_gets_a_route_to_the_activator_on_https_and_a_redirect_on_http() -> None:
    exposed = exposure.of_trigger(trigger())
    assert exposed is not None
    forward, redirect = exposure.build_routes(exposed, SETTINGS)
    assert forward["metadata"]["namespace"] == "shop"
    assert forward["metadata"]["ownerReferences"][0]["kind"] == "Trigger"
    assert forward["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "namespace": "gw",
            "name": "edge",
            "sectionName": "https",
        }
    ]
    assert forward["spec"]["hostnames"] == ["shop.example.com"]
    (rule,) = forward["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/api"}}]
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "namespace": "kfn-system", "name": "kfn-activator",
         "port": 80}
    ]  # fmt: skip
    assert redirect["spec"]["parentRefs"][0]["sectionName"] == "http"
    (filter_,) = redirect["spec"]["rules"][0]["filters"]
    assert filter_ == {"type": "RequestRedirect",
                       "requestRedirect": {"scheme": "https", "statusCode": 301}}  # fmt: skip
    assert "backendRefs" not in redirect["spec"]["rules"][0]


def test_a_redirect_names_the_public_port_when_it_is_not_443() -> None:
    settings_ = exposure.settings_from_json(json.dumps({**RAW, "port": 30443}))
    assert settings_ is not None
    exposed = exposure.of_trigger(trigger())
    assert exposed is not None
    redirect = exposure.build_routes(exposed, settings_)[1]
    assert redirect["spec"]["rules"][0]["filters"][0]["requestRedirect"]["port"] == 30443


def test_a_trigger_may_choose_its_listener_only_when_the_admin_allows_it() -> None:
    exposed = exposure.of_trigger(trigger(gateway={"name": "private", "sectionName": "internal"}))
    assert exposed is not None
    refusal = exposure.trigger_listener_refused(exposed, SETTINGS)
    assert refusal is not None
    assert "allowTriggerListeners" in refusal
    allowing = exposure.settings_from_json(
        json.dumps({**RAW, "gateway": {**RAW["gateway"], "allowTriggerListeners": True}})
    )
    assert allowing is not None
    assert exposure.trigger_listener_refused(exposed, allowing) is None
    (route,) = exposure.build_routes(exposed, allowing)  # no redirect on a chosen listener
    assert route["spec"]["parentRefs"][0] | {} == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "shop",
        "name": "private",
        "sectionName": "internal",
    }


def test_the_grant_lets_one_namespaces_routes_reach_only_the_activators_service() -> None:
    grant = exposure.build_grant("shop", SETTINGS)
    assert grant["metadata"]["namespace"] == "kfn-system"
    assert grant["spec"] == {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
        "to": [{"group": "", "kind": "Service", "name": "kfn-activator"}],
    }


def test_an_ingress_lives_beside_the_activator_with_the_admins_tls_and_annotations() -> None:
    settings_ = exposure.settings_from_json(
        json.dumps(
            {
                **RAW,
                "mode": "ingress",
                "ingress": {
                    "className": "contour",
                    "tlsSecret": "wildcard",
                    "annotations": {"cert-manager.io/cluster-issuer": "ca"},
                },
            }
        )
    )
    assert settings_ is not None
    exposed = exposure.of_trigger(trigger())
    assert exposed is not None
    ingress = exposure.build_ingress(exposed, settings_)
    assert ingress["metadata"]["namespace"] == "kfn-system"
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "ca"}
    assert ingress["metadata"]["labels"][exposure.LABEL_NAMESPACE] == "shop"
    assert ingress["spec"]["ingressClassName"] == "contour"
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "wildcard"}]
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert (path["path"], path["pathType"]) == ("/api", "Prefix")


def test_ingress_names_of_different_owners_never_collide() -> None:
    a = exposure.Exposed("Trigger", "a-b", "c", "", "h", "/", None)
    b = exposure.Exposed("Trigger", "a", "b-c", "", "h", "/", None)
    assert exposure.ingress_name(a) != exposure.ingress_name(b)
    assert len(exposure.ingress_name(exposure.Exposed("Function", "n" * 63, "f" * 63, "", "h",
                                                      "/", None))) <= 63  # fmt: skip


# --- the Gateway's answer -------------------------------------------------------------------

LISTENER = exposure.Listener("gw", "edge", "https")
GATEWAY = {"status": {"addresses": [{"type": "IPAddress", "value": "10.96.0.50"}]}}


def route(*conditions: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "generation": generation},
        "status": {
            "parents": [
                {
                    "parentRef": {"name": "edge", "namespace": "gw", "sectionName": "https"},
                    "conditions": list(conditions),
                }
            ]
        },
    }


def test_an_accepted_route_is_exposed_and_says_where() -> None:
    verdict = exposure.route_verdict(
        route(
            {"type": "Accepted", "status": "True", "observedGeneration": 1},
            {"type": "ResolvedRefs", "status": "True"},
        ),
        LISTENER,
        gateway=GATEWAY,
        url="https://shop.example.com/api",
    )
    assert verdict.status == "True"
    assert "https://shop.example.com/api" in verdict.message
    assert "10.96.0.50" in verdict.message


def test_a_refusal_carries_the_gateways_own_reason() -> None:
    verdict = exposure.route_verdict(
        route(
            {
                "type": "Accepted",
                "status": "False",
                "reason": "NotAllowedByListeners",
                "message": "no listener allows this namespace",
            }
        ),
        LISTENER,
        gateway=GATEWAY,
        url="u",
    )
    assert (verdict.status, verdict.reason) == ("False", "NotAllowedByListeners")
    assert "no listener allows this namespace" in verdict.message


def test_a_missing_grant_says_who_can_fix_it() -> None:
    verdict = exposure.route_verdict(
        route(
            {"type": "Accepted", "status": "True"},
            {"type": "ResolvedRefs", "status": "False", "reason": "RefNotPermitted"},
        ),
        LISTENER,
        gateway=GATEWAY,
        url="u",
    )
    assert verdict.reason == "RefNotPermitted"
    assert "ReferenceGrant" in verdict.message


def test_an_answer_about_an_older_generation_is_still_waiting() -> None:
    verdict = exposure.route_verdict(
        route({"type": "Accepted", "status": "True", "observedGeneration": 1}, generation=2),
        LISTENER,
        gateway=GATEWAY,
        url="u",
    )
    assert (verdict.status, verdict.reason) == ("Unknown", "Exposing")


def test_no_answer_from_the_gateway_yet_is_unknown_and_a_missing_gateway_is_false() -> None:
    assert exposure.route_verdict({"metadata": {}}, LISTENER, gateway=GATEWAY,
                                  url="u").status == "Unknown"  # fmt: skip
    missing = exposure.route_verdict(None, LISTENER, gateway=None, url="u")
    assert (missing.status, missing.reason) == ("False", "GatewayNotFound")


def test_an_ingress_serves_once_its_controller_publishes_an_address() -> None:
    assert exposure.ingress_verdict({"status": {}}, "u").status == "Unknown"
    served = {"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}}
    assert exposure.ingress_verdict(served, "u").status == "True"


# --- applying: only what is missing, never a user's object ---------------------------------


class FakeKube:
    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.applied: list[str] = []
        self.deleted: list[str] = []
        self.read: list[str] = []

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        self.read.append(f"{kind}/{namespace}/{name}")
        return self.objects.get((kind, namespace, name))

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        self.applied.append(f"{obj['kind']}/{md['namespace']}/{md['name']}")
        self.objects[(obj["kind"], md["namespace"], md["name"])] = obj
        return obj

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        self.deleted.append(f"{kind}/{namespace}/{name}")
        return self.objects.pop((kind, namespace, name), None) is not None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    cluster = FakeKube({("Gateway", "gw", "edge"): GATEWAY})
    for name in ("get", "apply", "delete"):
        monkeypatch.setattr(kube, name, getattr(cluster, name))
    monkeypatch.setattr(settings, "exposure_settings", lambda: SETTINGS)
    return cluster


def test_exposing_writes_the_grant_and_both_routes_once(fake: FakeKube) -> None:
    exposed = exposure.of_trigger(trigger())
    assert exposed is not None
    verdict = operator_exposure.expose(exposed, SETTINGS)
    assert verdict.status == "Unknown"  # nothing answered yet
    assert fake.applied == [
        "ReferenceGrant/kfn-system/kfn-routes-from-shop",
        "HTTPRoute/shop/kfn-trigger-web",
        "HTTPRoute/shop/kfn-trigger-web-redirect",
    ]
    operator_exposure.expose(exposed, SETTINGS)
    assert len(fake.applied) == 3  # nothing changed, nothing written


def test_withdrawing_deletes_kfns_routes_but_not_a_users_object_of_the_same_name(
    fake: FakeKube,
) -> None:
    exposed = exposure.of_trigger(trigger())
    assert exposed is not None
    operator_exposure.expose(exposed, SETTINGS)
    fake.objects[("HTTPRoute", "shop", "kfn-trigger-web-redirect")]["metadata"]["labels"] = {}
    operator_exposure.withdraw("Trigger", "shop", "web", SETTINGS)
    assert fake.deleted == ["HTTPRoute/shop/kfn-trigger-web"]


def test_a_refused_trigger_gets_no_route_at_the_edge(fake: FakeKube) -> None:
    assert operator_exposure.expose_trigger(trigger(), routed=False) is None
    assert fake.applied == []


def test_a_function_url_without_a_domain_says_the_cluster_serves_none(
    fake: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_urls = exposure.settings_from_json(json.dumps({**RAW, "functionUrls": {}}))
    monkeypatch.setattr(settings, "exposure_settings", lambda: no_urls)
    outcome = operator_exposure._function_verdict(fn(url={}), None)
    assert outcome is not None
    assert (outcome[0].status, outcome[0].reason) == ("False", "NotExposed")


def test_the_function_url_status_shows_the_url_only_once_served() -> None:
    waiting = exposure.Verdict("Unknown", "Exposing", "waiting")
    status = operator_exposure.desired_function_status(fn(url={}), waiting, "https://h/", NOW)
    assert status["functionUrl"] is None
    assert [c["type"] for c in status["conditions"]] == ["Exposed"]
    served = exposure.Verdict("True", "Exposed", "served")
    status = operator_exposure.desired_function_status(fn(url={}), served, "https://h/", NOW)
    assert status["functionUrl"] == "https://h/"
    assert status["conditions"][0]["observedGeneration"] == 2


import datetime  # noqa: E402

NOW = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)


# --- hosts the Gateway's listener cannot serve ---------------------------------------------

EDGE = {
    "spec": {
        "listeners": [
            {"name": "http", "hostname": "*.kfn.localhost"},
            {"name": "https", "hostname": "*.kfn.localhost"},
            {"name": "any"},
        ]
    },
    **GATEWAY,
}


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*.kfn.localhost", "a.kfn.localhost", True),
        ("*.kfn.localhost", "a.b.kfn.localhost", True),
        ("*.kfn.localhost", "kfn.localhost", False),
        ("*.kfn.localhost", "akfn.localhost", False),
        ("api.example.com", "api.example.com", True),
        ("api.example.com", "x.api.example.com", False),
    ],
)
def test_a_listener_hostname_matches_as_gateway_api_says(
    pattern: str, host: str, matches: bool
) -> None:
    assert exposure.hostname_matches(pattern, host) is matches


def test_a_host_outside_the_listeners_hostname_is_said_to_be_served_inside_only() -> None:
    why = exposure.unmatched_host(EDGE, LISTENER, "shop.example.com")
    assert why is not None
    assert "*.kfn.localhost" in why
    assert "inside the cluster" in why
    assert exposure.unmatched_host(EDGE, LISTENER, "a.kfn.localhost") is None
    anything = exposure.Listener("gw", "edge", "any")
    assert exposure.unmatched_host(EDGE, anything, "shop.example.com") is None


def test_no_route_is_written_for_a_host_no_listener_serves(fake: FakeKube) -> None:
    fake.objects[("Gateway", "gw", "edge")] = EDGE
    exposed = exposure.of_trigger(trigger())  # shop.example.com
    assert exposed is not None
    verdict = operator_exposure.expose(exposed, SETTINGS)
    assert (verdict.status, verdict.reason) == ("False", "NoMatchingListenerHostname")
    assert fake.applied == []


def _ready_and_exposed(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_the_edge_refusing_the_admins_listener_leaves_ready_to_the_activators_routing() -> None:
    refused = exposure.Verdict("False", "NoMatchingListenerHostname", "inside only")
    status = triggers.desired_status(
        trigger(), function_exists=True, refusal=None, base_url="http://a", now=NOW,
        exposed=(refused, "https://shop.example.com/api"),
    )  # fmt: skip
    assert _ready_and_exposed(status) == {
        "Exposed": ("False", "NoMatchingListenerHostname"),
        "Ready": ("True", "Ready"),
    }
    assert status["url"] == "http://shop.example.com/api"


def test_a_trigger_that_names_its_listener_is_ready_only_once_exposed_there() -> None:
    refused = exposure.Verdict("False", "NotAllowedByListeners", "not this namespace")
    named = trigger(gateway={"name": "edge", "namespace": "gw", "sectionName": "restricted"})
    status = triggers.desired_status(
        named, function_exists=True, refusal=None, base_url="http://a", now=NOW,
        exposed=(refused, "https://shop.example.com/api"),
    )  # fmt: skip
    assert _ready_and_exposed(status)["Ready"] == ("False", "NotAllowedByListeners")
    assert status["url"] == "https://shop.example.com/api"


def test_cert_manager_issued_ingresses_each_name_a_secret_of_their_own() -> None:
    issued = exposure.Ingress(annotations={exposure.ANNOTATION_CERT_CLUSTER_ISSUER: "ca"})
    settings_ = exposure.settings_from_json(
        json.dumps({**RAW, "mode": "ingress",
                    "ingress": {"annotations": dict(issued.annotations)}})
    )  # fmt: skip
    assert settings_ is not None
    a = exposure.Exposed("Trigger", "shop", "a", "", "a.example.com", "/", None)
    b = exposure.Exposed("Trigger", "shop", "b", "", "b.example.com", "/", None)
    secrets = {exposure.build_ingress(e, settings_)["spec"]["tls"][0]["secretName"] for e in (a, b)}
    assert secrets == {f"{exposure.ingress_name(a)}-tls", f"{exposure.ingress_name(b)}-tls"}
    plain = exposure.settings_from_json(json.dumps({**RAW, "mode": "ingress"}))
    assert plain is not None
    assert "tls" not in exposure.build_ingress(a, plain)["spec"]


# --- asking the API server only where routes can be -----------------------------------------


def test_a_trigger_never_exposed_costs_no_lookup_and_one_that_was_has_its_routes_removed(
    fake: FakeKube,
) -> None:
    assert operator_exposure.expose_trigger(trigger(host=None), routed=True) is None
    assert fake.read == []
    exposed = exposure.of_trigger(trigger())
    assert exposed is not None
    operator_exposure.expose(exposed, SETTINGS)
    was = trigger(host=None).model_copy(
        update={
            "status": trigger_api.TriggerStatus.model_validate(
                {"conditions": [{"type": "Exposed", "status": "True", "reason": "Exposed",
                                 "message": "m", "lastTransitionTime": "2026-12-04T00:00:00Z"}]}
            )
        }
    )  # fmt: skip
    assert operator_exposure.expose_trigger(was, routed=True) is None
    assert fake.deleted == [
        "HTTPRoute/shop/kfn-trigger-web",
        "HTTPRoute/shop/kfn-trigger-web-redirect",
    ]


def _function_body(url: bool, exposed: dict[str, Any] | None = None) -> dict[str, Any]:
    body = fn(url={} if url else None).model_dump(mode="json", by_alias=True, exclude_none=True)
    if exposed is not None:
        body["status"] = {"conditions": [exposed]}
    return body


def test_a_function_whose_url_is_served_for_its_spec_passes_over_its_other_events() -> None:
    served = {"type": "Exposed", "status": "True", "observedGeneration": 2}
    assert operator_exposure.settled(_function_body(True, served), None)
    assert not operator_exposure.settled(
        _function_body(True, {**served, "observedGeneration": 1}), None
    )
    assert not operator_exposure.settled(
        _function_body(True, {**served, "status": "Unknown"}), None
    )
    refusal = routes.Refusal(holder=None, message="taken")
    assert not operator_exposure.settled(_function_body(True, served), refusal)


def test_function_events_without_a_url_now_or_before_cost_nothing(fake: FakeKube) -> None:
    for kind in ("MODIFIED", "DELETED"):
        operator_exposure.function_url_event(
            event={"type": kind, "object": _function_body(False)}, logger=None,
            route_claims={}, url_claims={},
        )  # fmt: skip
    assert fake.read == []
    assert fake.deleted == []


def exposed_status(status: str, reason: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Exposed", "status": status, "reason": reason}]}


@pytest.mark.parametrize(
    ("status", "deleted", "concerned"),
    [
        (exposed_status("False", "GatewayNotFound"), False, True),
        (exposed_status("False", exposure.NO_MATCHING_HOSTNAME), False, True),
        (exposed_status("False", "RouteRejected"), False, False),
        (exposed_status("True", "Exposed"), False, False),
        (exposed_status("True", "Exposed"), True, True),
        ({"conditions": [{"type": "Ready", "status": "False", "reason": "GatewayNotFound"}]}, True,
         False),
        (None, True, False),
    ],
    ids=["waits-for-one", "no-listener-takes-the-host", "refused-otherwise", "served",
         "served-by-a-gateway-that-went", "never-exposed", "no-status"],
)  # fmt: skip
def test_a_gateway_event_looks_again_only_at_owners_waiting_for_a_gateway_or_all_when_one_goes(
    status: dict[str, Any] | None, deleted: bool, concerned: bool
) -> None:
    assert exposure.gateway_event_concerns(status, deleted=deleted) is concerned
