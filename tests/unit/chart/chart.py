"""Rendering the kfn chart with ``helm template`` and picking objects out of what it renders.

Shared by the chart's unit tests (beside this module) and the cluster tests that ask the API
server about the same objects (``tests/cluster/test_chart.py``). Every call takes the helm
binary to run, so each suite decides where it comes from.
"""

from __future__ import annotations

import functools
import json
import pathlib
import subprocess
from typing import Any

import yaml

from kfncluster import config

REPO = pathlib.Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "kfn"
NAMESPACE = "kfn-system"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

#: libyaml's loader where PyYAML has it: rendered charts are long.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

COMPONENT = "app.kubernetes.io/component"
COMPONENTS = (
    "operator",
    "activator",
    "invoke",
    "invoker",
    "autoscaler",
    "cron",
    "stream",
    "bucket",
    "dashboard",
)
#: The components that run pods (the invoke Service, the invoker role and the dashboard's
#: ConfigMap run none).
WORKLOADS = tuple(c for c in COMPONENTS if c not in ("invoke", "invoker", "dashboard"))

#: What every install must say (the chart refuses without it): where kfn's images come from,
#: where builds push, and the robot key of the default (managed) credentials.
REQUIRED: dict[str, Any] = {
    "image": {"registry": "registry.example.com"},
    "registry": {
        "host": "registry.example.com",
        "credentials": {"managed": {"robotKeySecret": {"name": "kfn-registry-robot-key"}}},
    },
}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def run_helm(
    helm: pathlib.Path, *args: str, values: dict[str, Any] | None = None, bare: bool = False
) -> subprocess.CompletedProcess[str]:
    """Runs helm; ``values`` go in as a values file so nested maps and lists keep their types.

    The values every install needs (:data:`REQUIRED`) are merged under them unless ``bare``.
    """
    if not bare:
        values = merged(REQUIRED, values or {})
    extra = ["--values", "-"] if values is not None else []
    return subprocess.run(
        [str(helm), *args, *extra],
        input=json.dumps(values) if values is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render(
    helm: pathlib.Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "kfn",
    set_: tuple[str, ...] = (),
    tests: bool = False,
    api_versions: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders, for the Kubernetes version the local cluster runs
    (the ``helm test`` hook only with ``tests``), on a cluster that also serves
    ``api_versions`` (``monitoring.coreos.com/v1``, say)."""
    sets = [arg for s in set_ for arg in ("--set", s)]
    sets += [arg for v in api_versions for arg in ("--api-versions", v)]
    if not tests:
        sets.append("--skip-tests")
    args = ("template", release, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", config.KUBERNETES_VERSION, *sets)  # fmt: skip
    returncode, stdout, stderr = _template(helm, args, json.dumps(values, sort_keys=True))
    assert returncode == 0, f"helm template failed: {stderr}"
    return [doc for doc in yaml.load_all(stdout, Loader=_LOADER) if doc]


@functools.cache
def _template(helm: pathlib.Path, args: tuple[str, ...], values: str) -> tuple[int, str, str]:
    """One ``helm template`` per distinct input (the chart does not change during a run):
    many tests render the defaults. Each caller parses the text anew, so none sees another's
    changes to the objects."""
    result = run_helm(helm, *args, values=json.loads(values))
    return result.returncode, result.stdout, result.stderr


def render_error(helm: pathlib.Path, *set_: str) -> str:
    """The message of a ``helm template`` that must fail."""
    sets = [arg for s in set_ for arg in ("--set", s)]
    result = run_helm(
        helm, "template", "kfn", str(CHART), "--kube-version", config.KUBERNETES_VERSION, *sets
    )
    assert result.returncode != 0, f"helm template accepted {set_}"
    return result.stderr


def of(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    """The objects of one component (operator, activator, autoscaler, cron, stream, bucket)."""
    return [o for o in objects if o["metadata"]["labels"][COMPONENT] == component]


def one(objects: list[dict[str, Any]], kind: str, component: str = "operator") -> dict[str, Any]:
    found = [o for o in of(objects, component) if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def container(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The one container of a component's Deployment."""
    (found,) = one(objects, "Deployment", component)["spec"]["template"]["spec"]["containers"]
    return dict(found)


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """Every (API group, resource, verb) a Role or ClusterRole grants."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
