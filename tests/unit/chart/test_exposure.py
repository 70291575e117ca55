"""The chart's exposure values reach the operator (routes at the cluster's edge) and the
activator (Function URL hosts, trusted proxies) alike, with only the rights they need."""

from __future__ import annotations

import pathlib
from typing import Any

from kfn.resources import exposure
from tests.unit.chart import chart

GATEWAY = {
    "exposure": {
        "mode": "gateway",
        "gateway": {"name": "public", "namespace": "gateway-system"},
        "functionUrls": {"domain": "fn.example.com"},
        "trustedProxies": {
            "pods": {"namespace": "envoy-gateway-system", "selector": "app=envoy"},
            "cidrs": ["10.0.0.0/8"],
        },
    }
}


def _env(objects: list[dict[str, Any]], name: str) -> str:
    env = chart.operator_container(objects)["env"]
    return str(next(e["value"] for e in env if e["name"] == name))


def test_by_default_nothing_is_exposed_and_no_route_right_is_bound_in_the_namespace(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    settings = exposure.settings_from_json(_env(objects, "KFN_EXPOSURE"))
    assert settings is not None
    assert settings.mode == "none"
    assert not settings.function_urls
    assert [o for o in objects if o["kind"] == "Role" and "exposure" in o["metadata"]["name"]] == []
    args = chart.container(objects, "activator")["args"]
    assert not [a for a in args if "function-url" in a or "trusted-proxy" in a]


def test_the_operator_routes_to_this_releases_public_activator_service(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, GATEWAY, release="edge")
    settings = exposure.settings_from_json(_env(objects, "KFN_EXPOSURE"))
    assert settings is not None
    service = chart.one(objects, "Service", "activator")
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert settings.backend == exposure.Backend(chart.NAMESPACE, service["metadata"]["name"],
                                                http["port"])  # fmt: skip
    assert settings.https == exposure.Listener("gateway-system", "public", "https")
    assert settings.http_section == "http"
    assert settings.function_url_host("hello", "shop") == "hello-shop.fn.example.com"


def test_grants_and_ingresses_are_written_only_in_the_releases_namespace(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, GATEWAY)
    (role,) = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith(
        "-exposure")]  # fmt: skip
    assert role["metadata"]["namespace"] == chart.NAMESPACE
    assert chart.granted(role) == {
        *(("gateway.networking.k8s.io", "referencegrants", v)
          for v in ["get", "create", "patch", "delete"]),
        *(("networking.k8s.io", "ingresses", v) for v in ["create", "patch", "delete"]),
    }  # fmt: skip


def test_the_activator_serves_function_urls_and_believes_only_the_gateways_proxies(
    helm: pathlib.Path,
) -> None:
    args = chart.container(chart.render(helm, GATEWAY), "activator")["args"]
    assert "--function-url-domain=fn.example.com" in args
    assert "--function-url-host-template={function}-{namespace}.{domain}" in args
    assert "--trusted-proxy-pods=envoy-gateway-system:app=envoy" in args
    assert "--trusted-proxy-cidrs=10.0.0.0/8" in args


def test_an_unknown_mode_is_refused_by_the_schema(helm: pathlib.Path) -> None:
    assert "exposure" in chart.render_error(helm, "exposure.mode=loadbalancer")


def test_trusted_proxy_pods_without_a_selector_are_refused(helm: pathlib.Path) -> None:
    error = chart.render_error(
        helm, "image.registry=r.example", "registry.host=r.example",
        "exposure.trustedProxies.pods.namespace=envoy",
    )  # fmt: skip
    assert "exposure.trustedProxies.pods.selector" in error
