"""Building the cluster's Go components from pinned modules, once per version.

Each component has a wrapper module under ``hack/cluster/gomod/<name>`` whose
``go.mod``/``go.sum`` pin it; the binaries go to the cache under a directory
keyed by the component's version and a hash of its ``go.sum``, so a change of
pin builds anew and an unchanged one is reused at once. A wrapper whose ``go.mod`` names a
``toolchain`` is built with exactly that Go (``GOTOOLCHAIN``, fetched from the module proxy
the first time), whatever Go the machine has.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Sequence

from kfncluster import config, host

GOMOD = pathlib.Path(__file__).resolve().parent.parent / "gomod"

KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)


@dataclasses.dataclass(frozen=True)
class GoComponent:
    """One wrapper module and the commands built from it."""

    name: str
    version: str
    packages: tuple[str, ...]
    outputs: tuple[str, ...]
    ldflags: str = "-s -w"
    #: Go build tags (``-tags``), e.g. to leave out code a component has no use for here.
    tags: tuple[str, ...] = ()
    #: A rough cold-build time on 2 cores, so the progress line can say what to expect.
    expect: str = "~1 min"

    @property
    def module_dir(self) -> pathlib.Path:
        return GOMOD / self.name

    @property
    def toolchain(self) -> str | None:
        """The Go toolchain the wrapper's ``go.mod`` pins, if it pins one."""
        for line in (self.module_dir / "go.mod").read_text().splitlines():
            if line.startswith("toolchain "):
                return line.split()[1]
        return None

    def describe(self) -> str:
        """Its name and version, and the toolchain when it has its own, for progress lines."""
        with_go = f" with {self.toolchain}" if self.toolchain else ""
        return f"{self.name} {self.version}{with_go}"

    def key(self) -> str:
        sha = hashlib.sha256()
        for f in ("go.mod", "go.sum", "main.go"):
            path = self.module_dir / f
            if path.exists():
                sha.update(path.read_bytes())
        sha.update(self.ldflags.encode())
        if self.tags:
            sha.update(",".join(self.tags).encode())
        return f"{self.version}-{sha.hexdigest()[:12]}"


def _kube_ldflags() -> str:
    flags = ["-s", "-w"]
    major, minor = config.KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={config.KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


COMPONENTS = (
    GoComponent(
        "kubernetes",
        config.KUBERNETES_VERSION,
        tuple(f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS),
        KUBE_COMMANDS,
        _kube_ldflags(),
        expect="~6 min",
    ),
    GoComponent("etcd", config.ETCD_VERSION, ("go.etcd.io/etcd/server/v3",), ("etcd",)),
    GoComponent(
        "coredns",
        config.COREDNS_VERSION,
        ("github.com/coredns/coredns",),
        ("coredns",),
        expect="~3 min",
    ),
    GoComponent(
        "helm", config.HELM_VERSION, ("helm.sh/helm/v3/cmd/helm",), ("helm",), expect="~2 min"
    ),
    GoComponent(
        "crictl", config.CRICTL_VERSION, ("sigs.k8s.io/cri-tools/cmd/crictl",), ("crictl",)
    ),
    GoComponent("pause", config.PAUSE_VERSION, (".",), ("pause",), expect="~10 s"),
    GoComponent(
        "nats",
        config.NATS_VERSION,
        ("github.com/nats-io/nats-server/v2",),
        ("nats-server",),
        expect="~2 min",
    ),
    GoComponent(
        "versitygw",
        config.VERSITYGW_VERSION,
        ("github.com/versity/versitygw/cmd/versitygw",),
        ("versitygw",),
        f"-s -w -X main.Version={config.VERSITYGW_VERSION}",
        expect="~4 min",
    ),
    GoComponent(
        "kube-router",
        config.KUBE_ROUTER_VERSION,
        ("github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",),
        ("kube-router",),
        "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version="
        + config.KUBE_ROUTER_VERSION,
        expect="~6 min",
    ),
    GoComponent(
        "envoy-gateway",
        config.ENVOY_GATEWAY_VERSION,
        ("github.com/envoyproxy/gateway/cmd/envoy-gateway",),
        ("envoy-gateway",),
        "-s -w -X github.com/envoyproxy/gateway/internal/cmd/version.envoyGatewayVersion="
        + config.ENVOY_GATEWAY_VERSION,
        expect="~6 min",
    ),
    GoComponent(
        "cert-manager",
        config.CERT_MANAGER_VERSION,
        (".",),
        ("cert-manager-controller",),
        "-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion="
        + config.CERT_MANAGER_VERSION,
        expect="~4 min",
    ),
    GoComponent(
        "contour",
        config.CONTOUR_VERSION,
        ("github.com/projectcontour/contour/cmd/contour",),
        ("contour",),
        "-s -w -X github.com/projectcontour/contour/internal/build.Version="
        + config.CONTOUR_VERSION,
        expect="~4 min",
    ),
    GoComponent(
        "prometheus",
        config.PROMETHEUS_VERSION,
        (
            "github.com/prometheus/prometheus/cmd/prometheus",
            "github.com/prometheus/prometheus/cmd/promtool",
        ),
        ("prometheus", "promtool"),
        "-s -w -X github.com/prometheus/common/version.Version="
        + config.PROMETHEUS_VERSION.removeprefix("v"),
        # Kubernetes service discovery only: no cloud provider's discovery is compiled in, so
        # nothing in the binary can look targets up off the machine. No web UI assets either
        # (they need an npm build); the HTTP API is all kfn uses.
        tags=("remove_all_sd", "enable_kubernetes_sd"),
        expect="~6 min",
    ),
    GoComponent(
        "prometheus-operator",
        config.PROMETHEUS_OPERATOR_VERSION,
        (
            "github.com/prometheus-operator/prometheus-operator/cmd/operator",
            "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader",
        ),
        ("operator", "prometheus-config-reloader"),
        "-s -w -X github.com/prometheus/common/version.Version="
        + config.PROMETHEUS_OPERATOR_VERSION.removeprefix("v"),
        expect="~5 min",
    ),
)


def output_dir(paths: config.Paths, component: GoComponent) -> pathlib.Path:
    return paths.component_bin(component.name, component.key())


def is_built(paths: config.Paths, component: GoComponent) -> bool:
    out = output_dir(paths, component)
    return all((out / name).exists() for name in component.outputs)


def build(paths: config.Paths, component: GoComponent, log: pathlib.Path) -> pathlib.Path:
    """Builds ``component`` into the cache unless it is there; returns its directory."""
    out = output_dir(paths, component)
    if is_built(paths, component):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{component.name}-"))
    env = _go_env(component)
    cmd = ["go", "build", "-trimpath", "-ldflags", component.ldflags]
    if component.tags:
        cmd += ["-tags", ",".join(component.tags)]
    if len(component.packages) == 1:
        cmd += ["-o", str(tmp / component.outputs[0]), component.packages[0]]
    else:
        cmd += ["-o", str(tmp) + "/", *component.packages]
    try:
        host.run_logged(cmd, log, f"building {component.name}", cwd=component.module_dir, env=env)
    except RuntimeError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _go_env(component: GoComponent) -> dict[str, str]:
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
    if component.toolchain:
        env["GOTOOLCHAIN"] = component.toolchain
    return env


def module_source(component: GoComponent, module: str) -> pathlib.Path:
    """The source tree of ``module`` at the version ``component``'s wrapper pins.

    ``go mod download`` fetches the module zip from the module proxy the first time (checked
    against the wrapper's ``go.sum``) and answers from the module cache after that; files such
    as CRDs are read from there at install time rather than copied into this repository.
    """
    result = host.run(
        ["go", "mod", "download", "-json", module],
        cwd=component.module_dir,
        env=_go_env(component),
        check=False,
    )
    try:
        found = json.loads(result.stdout)
    except ValueError:
        found = {}
    if result.returncode != 0 or "Dir" not in found:
        detail = found.get("Error") or result.stderr.strip() or "no answer"
        raise RuntimeError(f"go mod download {module} (for {component.name}): {detail}")
    return pathlib.Path(found["Dir"])


def component(name: str) -> GoComponent:
    """The component called ``name``."""
    for c in COMPONENTS:
        if c.name == name:
            return c
    raise KeyError(name)


def binaries(paths: config.Paths) -> dict[str, pathlib.Path]:
    """Paths of every built command, by name."""
    found = {}
    for component in COMPONENTS:
        for name in component.outputs:
            found[name] = output_dir(paths, component) / name
    return found


#: The commands a developer runs, linked into ``~/.cache/kfn/bin`` for PATH.
TOOLS = ("kubectl", "helm", "crictl", "promtool")
#: What the unit tests need without a cluster: the chart tests render with helm, and
#: ``promtool test rules`` checks Prometheus rules.
UNIT_TEST_TOOLS = ("helm", "promtool")


def link_tools(paths: config.Paths, names: Sequence[str] = TOOLS) -> None:
    """Points ``~/.cache/kfn/bin`` at the current build of each of ``names``."""
    paths.bin.mkdir(parents=True, exist_ok=True)
    bins = binaries(paths)
    for name in names:
        link = paths.bin / name
        tmp = link.with_name(f".{name}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(bins[name])
        tmp.replace(link)


def ensure_tools(
    paths: config.Paths, names: Sequence[str] = UNIT_TEST_TOOLS
) -> dict[str, pathlib.Path]:
    """Builds (the first time, from the pinned modules) and links the commands ``names``,
    without a cluster; returns their paths.

    Build logs go to ``<cache>/logs``, beside what they build: no cluster state is touched.
    """
    wanted = [c for c in COMPONENTS if set(c.outputs) & set(names)]
    missing = set(names) - {name for c in wanted for name in c.outputs}
    if missing:
        raise ValueError(f"no component builds {', '.join(sorted(missing))}")
    for component in wanted:
        if not is_built(paths, component):
            print(f"building {component.describe()} ({component.expect})", flush=True)
            build(paths, component, paths.cache / "logs" / f"build-{component.name}.log")
    link_tools(paths, names)
    bins = binaries(paths)
    return {name: bins[name] for name in names}
