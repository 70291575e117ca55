"""The local Ingress controller's parts, read without a cluster: the pin, Ingress-only mode,
least privilege in one namespace, xDS over mutual TLS, local images only, fixed node ports."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest
import yaml

from kfncluster import build, config, contour, gateway, gatewayinfra, ingress, install

CONTOUR_IMAGE = f"{config.REGISTRY}/kfn/contour@sha256:{'c' * 64}"
ENVOY_IMAGE = f"{config.REGISTRY}/kfn/envoy@sha256:{'e' * 64}"
WRITE = {"create", "update", "patch", "delete", "deletecollection"}


def _verbs(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule[field], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in contour.rbac_objects()}


def _pods() -> list[dict[str, Any]]:
    return [
        contour.deployment(CONTOUR_IMAGE)["spec"]["template"]["spec"],
        contour.envoy_deployment(CONTOUR_IMAGE, ENVOY_IMAGE)["spec"]["template"]["spec"],
        contour.certgen_job(CONTOUR_IMAGE)["spec"]["template"]["spec"],
    ]


# --- the build ----------------------------------------------------------------------------------


def test_contour_is_pinned_at_v1_33_8_and_built_with_go_1_27_3() -> None:
    gomod = (build.component("contour").module_dir / "go.mod").read_text()
    pins = dict(re.findall(r"^(?:require )?\s*(\S+) (v\S+)", gomod, re.MULTILINE))
    assert pins["github.com/projectcontour/contour"] == config.CONTOUR_VERSION == "v1.33.8"
    assert "replace" not in gomod
    component = build.component("contour")
    assert component.toolchain == "go1.27.3"
    assert component.packages == ("github.com/projectcontour/contour/cmd/contour",)
    assert component.outputs == ("contour",)
    assert "-X github.com/projectcontour/contour/internal/build.Version=v1.33.8" in (
        component.ldflags
    )


# --- Ingress only, one namespace ----------------------------------------------------------------


def test_contour_serves_ingresses_of_its_class_in_kfns_namespace_only() -> None:
    args = contour.serve_args()
    assert args[0] == "serve"
    assert f"--watch-namespaces={install.NAMESPACE}" in args
    assert f"--ingress-class-name={ingress.CLASS_NAME}" in args
    assert "--disable-feature=extensionservices" in args
    # No configuration file: no Gateway API (Envoy Gateway owns it), nothing to read.
    assert not any(a.startswith(("--config-path", "--contour-config-name")) for a in args)
    assert "--disable-leader-election" in args
    assert ingress.WATCHED_NAMESPACE == install.NAMESPACE


def test_contour_publishes_the_node_address_since_a_node_port_service_has_no_balancer() -> None:
    args = contour.serve_args()
    assert f"--ingress-status-address={config.NODE_IP}" in args
    assert not any(a.startswith("--envoy-service-name") for a in args)
    assert ingress.HOST_ADDRESS == config.NODE_IP


def test_the_ingress_class_is_contours_and_not_the_default() -> None:
    cls = contour.ingress_class()
    assert cls["metadata"]["name"] == ingress.CLASS_NAME == "contour"
    assert cls["spec"] == {"controller": "projectcontour.io/ingress-controller"}
    assert "ingressclass.kubernetes.io/is-default-class" not in json.dumps(cls)


# --- least privilege ----------------------------------------------------------------------------


def test_contours_rights_are_a_role_in_the_watched_namespace_and_nothing_cluster_wide() -> None:
    objects = _objects()
    kinds = {kind for kind, _ in objects}
    assert kinds == {"ServiceAccount", "Role", "RoleBinding"}, "no ClusterRole"
    role = objects[("Role", contour.ROLE)]
    assert role["metadata"]["namespace"] == ingress.WATCHED_NAMESPACE
    binding = objects[("RoleBinding", contour.ROLE)]
    assert binding["metadata"]["namespace"] == ingress.WATCHED_NAMESPACE
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": contour.NAME, "namespace": contour.NAMESPACE}
    ]
    assert not any("leases" in json.dumps(o) for o in objects.values()), "no leader election"


def test_contour_reads_what_an_ingress_needs_and_writes_only_ingress_status() -> None:
    granted = _verbs(contour.watched_rules())
    assert granted == {
        ("", "services"): {"get", "list", "watch"},
        ("", "secrets"): {"get", "list", "watch"},
        ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch"},
        ("networking.k8s.io", "ingresses"): {"get", "list", "watch"},
        ("networking.k8s.io", "ingresses/status"): {"update"},
        ("projectcontour.io", "httpproxies"): {"get", "list", "watch"},
        ("projectcontour.io", "tlscertificatedelegations"): {"get", "list", "watch"},
    }
    assert not any(group == "gateway.networking.k8s.io" for group, _ in granted)


def test_certgen_may_only_write_secrets_in_contours_namespace() -> None:
    role = _objects()[("Role", contour.CERTGEN)]
    assert role["metadata"]["namespace"] == contour.NAMESPACE
    assert _verbs(role["rules"]) == {("", "secrets"): {"create", "update"}}


def test_only_contour_and_certgen_get_a_service_account_token() -> None:
    tokens = {pod["serviceAccountName"]: pod["automountServiceAccountToken"] for pod in _pods()}
    assert tokens == {contour.NAME: True, contour.ENVOY: False, contour.CERTGEN: True}
    for obj in contour.rbac_objects():
        if obj["kind"] == "ServiceAccount":
            assert obj["automountServiceAccountToken"] is False


# --- xDS over mutual TLS ------------------------------------------------------------------------


def test_xds_is_served_over_tls_with_certgens_certificates_never_insecure() -> None:
    args = contour.serve_args()
    assert "--insecure" not in args
    assert {
        "--contour-cafile=/certs/ca.crt",
        "--contour-cert-file=/certs/tls.crt",
        "--contour-key-file=/certs/tls.key",
    } <= set(args)
    pod = contour.deployment(CONTOUR_IMAGE)["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "certs", "secret": {"secretName": contour.CONTOUR_SECRET}}]
    certgen = contour.certgen_job(CONTOUR_IMAGE)["spec"]["template"]["spec"]["containers"][0]
    assert certgen["command"] == ["contour", "certgen"]
    assert "--secrets-format=compact" in certgen["args"]


def test_envoy_bootstraps_from_contour_by_the_name_its_certificate_bears() -> None:
    pod = contour.envoy_deployment(CONTOUR_IMAGE, ENVOY_IMAGE)["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == CONTOUR_IMAGE
    assert init["args"][:2] == ["bootstrap", "/config/envoy.json"]
    assert f"--xds-address={contour.service()['metadata']['name']}" in init["args"]
    assert "--envoy-cert-file=/certs/tls.crt" in init["args"]
    assert contour.service()["metadata"]["name"] == "contour"
    certs = next(v for v in pod["volumes"] if v["name"] == "certs")
    assert certs["secret"]["secretName"] == contour.ENVOY_SECRET
    (envoy,) = pod["containers"]
    assert envoy["image"] == ENVOY_IMAGE
    assert envoy["args"][:2] == ["-c", "/config/envoy.json"]


def test_only_the_envoy_pods_may_reach_contours_xds_port() -> None:
    policy = contour.xds_policy()["spec"]
    assert policy["podSelector"] == {"matchLabels": contour.CONTOUR_SELECTOR}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": contour.XDS_PORT}]
    (source,) = rule["from"]
    assert source == {"podSelector": {"matchLabels": contour.ENVOY_SELECTOR}}
    envoy_labels = contour.envoy_deployment(CONTOUR_IMAGE, ENVOY_IMAGE)["spec"]["template"][
        "metadata"
    ]["labels"]
    assert contour.ENVOY_SELECTOR.items() <= envoy_labels.items()
    assert ingress.ENVOY_POD_LABELS.items() <= envoy_labels.items()


# --- images, pods and ports ---------------------------------------------------------------------


def test_every_image_is_the_local_registrys() -> None:
    named = re.findall(r'"image": "([^"]+)"', json.dumps(_pods()))
    assert set(named) == {CONTOUR_IMAGE, ENVOY_IMAGE}


def test_every_container_runs_as_non_root_with_no_privilege_and_a_memory_limit() -> None:
    for pod in _pods():
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["readOnlyRootFilesystem"] is True
            assert "memory" in container["resources"]["limits"]
            assert not any(p.get("hostPort") for p in container.get("ports", []))


def test_the_host_reaches_contours_envoy_on_its_own_fixed_node_ports() -> None:
    service = contour.envoy_service()["spec"]
    assert service["type"] == "NodePort"
    ports = {p["port"]: (p["targetPort"], p["nodePort"]) for p in service["ports"]}
    assert ports == {80: (8080, 31080), 443: (8443, 31443)}
    assert (ingress.HOST_HTTP_PORT, ingress.HOST_HTTPS_PORT) == (31080, 31443)
    assert {31080, 31443}.isdisjoint(gateway.NODE_PORTS.values())
    assert ingress.url("a.kfn.localhost", "/x") == "https://a.kfn.localhost:31443/x"
    args = ingress.curl_args("a.kfn.localhost")
    assert args[:2] == ["--resolve", "a.kfn.localhost:31443:10.244.0.1"]
    assert args[3].endswith("/gateway-ca.crt")


# --- CRDs and installing ------------------------------------------------------------------------


def _crd(name: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name}}  # fmt: skip


def _module(tmp_path: pathlib.Path, names: list[str]) -> pathlib.Path:
    path = tmp_path / contour.CRD_FILE
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump_all([_crd(n) for n in names]))
    return tmp_path


def test_only_the_two_crds_contour_cannot_start_without_are_taken(tmp_path: pathlib.Path) -> None:
    module = _module(
        tmp_path,
        [
            "contourconfigurations.projectcontour.io",
            "contourdeployments.projectcontour.io",
            "extensionservices.projectcontour.io",
            "httpproxies.projectcontour.io",
            "tlscertificatedelegations.projectcontour.io",
        ],
    )
    assert [c["metadata"]["name"] for c in contour.crds(module)] == list(contour.CRDS)


def test_a_module_without_them_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="lacks"):
        contour.crds(_module(tmp_path, ["httpproxies.projectcontour.io"]))


class FakeKubectl:
    """Records what the installer asks kubectl; the certgen Secret exists when told."""

    def __init__(self, *, secret: bool) -> None:
        self.secret = secret
        self.calls: list[tuple[str, ...]] = []
        self.applied: list[str] = []

    def __call__(self, *args: str, check: bool = True, input: str | None = None) -> str:
        self.calls.append(args)
        if input is not None:
            self.applied += [
                f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(input)
            ]
        if "rollout" in args:
            return "successfully rolled out"
        if "wait" in args:
            return "condition met"
        if args[2:5] == ("get", "secret", contour.ENVOY_SECRET):
            return f"secret/{contour.ENVOY_SECRET}" if self.secret else ""
        return ""


@pytest.mark.parametrize("secret", [False, True])
def test_certgen_runs_only_while_its_secrets_are_missing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, secret: bool
) -> None:
    module = _module(tmp_path, list(contour.CRDS))
    monkeypatch.setattr(build, "module_source", lambda component, name: module)
    kubectl = FakeKubectl(secret=secret)
    gatewayinfra.install_contour(kubectl, CONTOUR_IMAGE, ENVOY_IMAGE)
    assert (f"Job/{contour.CERTGEN}" in kubectl.applied) is not secret
    assert kubectl.applied.index("Deployment/contour") < kubectl.applied.index("Deployment/envoy")
    assert "IngressClass/contour" in kubectl.applied
    assert "NetworkPolicy/contour-xds" in kubectl.applied
