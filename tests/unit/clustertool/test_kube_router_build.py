"""kube-router is built from its pinned wrapper module with the Go toolchain that module names."""

from __future__ import annotations

import pathlib
import re

import pytest

from kfncluster import build, config


def _paths(tmp_path: pathlib.Path) -> config.Paths:
    return config.Paths(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")


def _component() -> build.GoComponent:
    (component,) = (c for c in build.COMPONENTS if c.name == "kube-router")
    return component


def test_the_wrapper_pins_v2_1_0_with_raised_dependencies_and_its_own_toolchain() -> None:
    gomod = (_component().module_dir / "go.mod").read_text()
    pins = dict(re.findall(r"^(?:require )?\s*(\S+) (v\S+)", gomod, re.MULTILINE))
    assert pins["github.com/cloudnativelabs/kube-router/v2"] == config.KUBE_ROUTER_VERSION
    for module, version in {
        "golang.org/x/net": "v0.63.0",
        "google.golang.org/grpc": "v1.85.0",
        "google.golang.org/protobuf": "v1.36.12",
        "golang.org/x/text": "v0.44.0",
        "golang.org/x/oauth2": "v0.38.0",
        "github.com/osrg/gobgp/v3": "v3.37.0",
        "github.com/docker/docker": "v25.0.13+incompatible",
        "k8s.io/api": "v0.34.4",
        "k8s.io/apimachinery": "v0.34.4",
        "k8s.io/client-go": "v0.34.4",
        "k8s.io/cri-api": "v0.34.4",
    }.items():
        assert pins[module] == version, module
    assert _component().toolchain == "go1.27.3"
    assert "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v2.1.0" in (
        _component().ldflags
    )


def test_a_wrapper_that_names_a_toolchain_is_built_with_exactly_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "gomod" / "thing"
    module.mkdir(parents=True)
    (module / "go.mod").write_text("module x\n\ngo 1.24.0\n\ntoolchain go1.99.1\n")
    monkeypatch.setattr(build, "GOMOD", tmp_path / "gomod")
    seen: list[dict[str, str]] = []

    def run_logged(cmd: list[str], log: pathlib.Path, what: str, **kw: object) -> None:
        env = kw["env"]
        assert isinstance(env, dict)
        seen.append(env)
        out = pathlib.Path(cmd[cmd.index("-o") + 1])
        out.write_text("built")

    monkeypatch.setattr(build.host, "run_logged", run_logged)
    thing = build.GoComponent("thing", "v1", (".",), ("thing",))
    assert thing.describe() == "thing v1 with go1.99.1"
    build.build(_paths(tmp_path), thing, tmp_path / "build.log")
    assert seen[0]["GOTOOLCHAIN"] == "go1.99.1"


def test_the_other_components_build_with_the_machines_go() -> None:
    # kube-router, the edge's controllers and the monitoring add-on name Go 1.27.3 for its
    # standard library fixes.
    pinned = {
        "kube-router",
        "envoy-gateway",
        "cert-manager",
        "contour",
        "prometheus",
        "prometheus-operator",
    }
    assert {c.name for c in build.COMPONENTS if c.toolchain} == pinned
    others = [c for c in build.COMPONENTS if c.name not in pinned]
    assert [c.toolchain for c in others] == [None] * len(others)
