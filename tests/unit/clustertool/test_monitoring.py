"""The local cluster's monitoring add-on: Prometheus and its operator, built here from pinned
modules, run from the local registry, reading the whole cluster's monitors and keeping little."""

from __future__ import annotations

import json
import pathlib
import re
import tarfile
from typing import Any

import pytest

from kfn import oci
from kfncluster import build, config, images, monitoring

PROMETHEUS_IMAGE = f"{config.REGISTRY}/kfn/prometheus@sha256:{'a' * 64}"
OPERATOR_IMAGE = f"{config.REGISTRY}/kfn/prometheus-operator@sha256:{'b' * 64}"
RELOADER_IMAGE = f"{config.REGISTRY}/kfn/prometheus-config-reloader@sha256:{'c' * 64}"
RULES = [{"apiGroups": ["monitoring.coreos.com"], "resources": ["prometheuses"], "verbs": ["get"]}]


def _pins(name: str) -> dict[str, str]:
    gomod = (build.component(name).module_dir / "go.mod").read_text()
    return dict(re.findall(r"^(?:require )?\s*(\S+) (v\S+)", gomod, re.MULTILINE))


def _paths(tmp_path: pathlib.Path) -> config.Paths:
    return config.Paths(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")


def _objects() -> list[dict[str, Any]]:
    return monitoring.objects(OPERATOR_IMAGE, RELOADER_IMAGE, RULES)


# --- builds -------------------------------------------------------------------------------------


def test_prometheus_3_16_0_is_its_module_v0_316_0_built_with_kubernetes_discovery_alone() -> None:
    assert _pins("prometheus")["github.com/prometheus/prometheus"] == "v0.316.0"
    assert config.PROMETHEUS_MODULE_VERSION == "v0.316.0"
    assert config.PROMETHEUS_VERSION == "v3.16.0"
    component = build.component("prometheus")
    assert component.outputs == ("prometheus", "promtool")
    assert component.tags == ("remove_all_sd", "enable_kubernetes_sd")
    assert "-X github.com/prometheus/common/version.Version=3.16.0" in component.ldflags
    assert component.toolchain == "go1.27.3"


def test_the_operator_and_its_config_reloader_come_from_the_pinned_v0_85_0() -> None:
    pins = _pins("prometheus-operator")
    module = "github.com/prometheus-operator/prometheus-operator"
    assert pins[module] == config.PROMETHEUS_OPERATOR_VERSION == "v0.85.0"
    component = build.component("prometheus-operator")
    assert component.outputs == ("operator", "prometheus-config-reloader")
    assert component.packages == (
        f"{module}/cmd/operator",
        f"{module}/cmd/prometheus-config-reloader",
    )


def test_build_tags_are_part_of_what_a_build_is_cached_by() -> None:
    component = build.component("prometheus")
    untagged = build.GoComponent(
        component.name, component.version, component.packages, component.outputs, component.ldflags
    )
    assert untagged.key() != component.key()


def test_promtool_is_one_of_the_tools_the_unit_tests_build_and_put_on_path() -> None:
    assert "promtool" in build.UNIT_TEST_TOOLS
    assert "promtool" in build.TOOLS


def test_each_image_is_its_binary_alone_in_bin_run_as_non_root(tmp_path: pathlib.Path) -> None:
    paths = _paths(tmp_path)
    for make, name in (
        (images.prometheus, "prometheus"),
        (images.prometheus_operator, "operator"),
        (images.prometheus_config_reloader, "prometheus-config-reloader"),
    ):
        binary = tmp_path / name
        binary.write_bytes(name.encode())
        image = make(paths, binary)
        cfg = json.loads(image.config.path.read_bytes())["config"]
        # The operator runs Prometheus by the image's entrypoint and the reloader by this path.
        assert cfg["Entrypoint"] == [f"/bin/{name}"]
        assert cfg["User"] == str(images.NONROOT)
        (layer,) = image.layers
        with tarfile.open(layer.blob.path) as tar:
            assert "bin" in tar.getnames()
            member = tar.getmember(f"bin/{name}")
            assert member.mode == 0o755
            assert tar.extractfile(member).read() == name.encode()  # type: ignore[union-attr]
        assert make(paths, binary).digest == image.digest


def test_the_other_static_images_keep_their_layout(tmp_path: pathlib.Path) -> None:
    binary = tmp_path / "contour"
    binary.write_bytes(b"contour")
    image: oci.Image = images.contour(_paths(tmp_path), binary)
    with tarfile.open(image.layers[0].blob.path) as tar:
        assert "bin" not in tar.getnames()
        assert "usr/local/bin/contour" in tar.getnames()


# --- what runs ----------------------------------------------------------------------------------


def test_prometheus_selects_every_monitor_and_rule_in_every_namespace() -> None:
    spec = monitoring.prometheus(PROMETHEUS_IMAGE)["spec"]
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}Selector"] == {}
        assert spec[f"{kind}NamespaceSelector"] == {}
    assert spec["version"] == config.PROMETHEUS_VERSION


def test_prometheus_keeps_two_hours_small_and_sends_nothing_anywhere() -> None:
    spec = monitoring.prometheus(PROMETHEUS_IMAGE)["spec"]
    assert spec["retention"] == "2h"
    assert spec["resources"]["limits"]["memory"] == "512Mi"
    assert spec["replicas"] == 1
    for away in ("remoteWrite", "alerting", "additionalScrapeConfigs", "remoteRead", "thanos"):
        assert away not in spec


def test_every_image_that_runs_is_from_the_local_registry() -> None:
    deployment = next(o for o in _objects() if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == OPERATOR_IMAGE
    assert f"--prometheus-config-reloader={RELOADER_IMAGE}" in container["args"]
    assert monitoring.prometheus(PROMETHEUS_IMAGE)["spec"]["image"] == PROMETHEUS_IMAGE
    for image in (OPERATOR_IMAGE, RELOADER_IMAGE, PROMETHEUS_IMAGE):
        assert image.startswith(f"{config.REGISTRY}/")


def test_prometheus_may_only_read_and_only_what_finding_targets_takes() -> None:
    for rule in monitoring.prometheus_rules():
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert "secrets" not in rule["resources"]
        assert "nodes" not in rule["resources"]


def test_the_operator_and_prometheus_run_as_non_root_with_no_privilege() -> None:
    deployment = next(o for o in _objects() if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert "limits" in container["resources"]
    prometheus_pod = monitoring.prometheus(PROMETHEUS_IMAGE)["spec"]["securityContext"]
    assert prometheus_pod["runAsNonRoot"] is True


def test_the_operator_gets_the_rules_its_release_publishes(tmp_path: pathlib.Path) -> None:
    role = tmp_path / monitoring.OPERATOR_ROLE_FILE
    role.parent.mkdir(parents=True)
    role.write_text(json.dumps({"kind": "ClusterRole", "rules": RULES}))
    assert monitoring.operator_rules(tmp_path) == RULES
    (cluster_role,) = [
        o for o in monitoring.objects(OPERATOR_IMAGE, RELOADER_IMAGE, RULES)
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == monitoring.OPERATOR_ROLE
    ]  # fmt: skip
    assert cluster_role["rules"] == RULES
    role.write_text(json.dumps({"kind": "ClusterRole"}))
    with pytest.raises(RuntimeError, match="no rules"):
        monitoring.operator_rules(tmp_path)


def test_only_the_monitoring_coreos_com_crds_are_taken_from_the_module(
    tmp_path: pathlib.Path,
) -> None:
    crds = tmp_path / monitoring.CRD_DIR
    crds.mkdir(parents=True)
    (crds / "monitoring.coreos.com_servicemonitors.yaml").write_text("{}")
    (crds / "kustomization.yaml").write_text("{}")
    assert [f.name for f in monitoring.crd_files(tmp_path)] == [
        "monitoring.coreos.com_servicemonitors.yaml"
    ]
    with pytest.raises(RuntimeError, match="no Prometheus Operator CRDs"):
        monitoring.crd_files(tmp_path / "elsewhere")


def test_the_module_read_must_be_the_pinned_operator(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "prometheus-operator@v0.84.0"
    monkeypatch.setattr(build, "module_source", lambda component, module: source)
    with pytest.raises(RuntimeError, match=r"not v0\.85\.0"):
        monitoring.module_dir()
