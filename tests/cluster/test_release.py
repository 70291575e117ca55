"""kfn installs from its released OCI chart, under any release name, in any namespace.

A cluster admin's path with nothing from the source tree: ``make release`` publishes the
images and the chart to the registry; ``helm install`` takes the chart from there under the
release name ``faas`` into the namespace ``serverless``, with the registry's TLS CA, the
token-authenticated registry and the robot key, as a cluster admin would pass them. A Function
with inline source and one dependency builds, becomes Ready and answers through that release's
activator; ``helm test`` passes; ``helm uninstall`` leaves nothing of kfn but the CRDs.

kfn is one per cluster (its operator reconciles every namespace), so the development release
is uninstalled first and installed again afterwards; the Functions of other tests and of the
developer stay, their Deployments untouched while no operator runs.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import config, install, kfnimage, release, runtimeimages
from kfncluster import registry as local_registry
from tests.cluster import invoking, kubeutil

pytestmark = pytest.mark.cluster

RELEASE = "faas"
NAMESPACE = "serverless"
HELM = config.Paths().bin / "helm"
HANDLER = """\
import json
import six

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"six": six.__version__, "ok": True})}
"""


def helm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(HELM), f"--kubeconfig={kubeutil.KUBECONFIG}", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return result


@pytest.fixture(scope="module")
def chart(cluster: pathlib.Path) -> tuple[str, str]:
    """The chart's OCI URL and version, published by ``make release``'s code."""
    return release.release(config.Paths())


@pytest.fixture(scope="module")
def released(chart: tuple[str, str], kfn: str) -> Iterator[str]:
    """The released chart installed as ``faas`` in ``serverless`` (the dev release removed)."""
    paths = config.Paths()
    url, version = chart
    removed = helm("uninstall", install.RELEASE, "--namespace", kfn, "--wait", "--timeout=180s")
    assert removed.returncode == 0, removed.stderr
    kubeutil.kubectl("create", "namespace", NAMESPACE)
    install.ensure_robot_key_secret(paths, NAMESPACE)
    ca = str(local_registry.ca_file(paths))
    try:
        installed = helm(
            "install", RELEASE, url, "--version", version, "--namespace", NAMESPACE,
            f"--ca-file={ca}",
            "--set", f"registry.host={config.REGISTRY}",
            "--set-file", f"registry.caBundle={ca}",
            "--set", f"registry.credentials.managed.robotKeySecret.name={install.ROBOT_KEY_SECRET}",
            "--set", f"builder.pypiIndexUrl=http://{kubeutil.NODE}:3141/root/pypi/+simple/",
            "--set", f"builder.npmRegistry=http://{kubeutil.NODE}:4873/",
            "--wait", "--timeout=300s",
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        yield NAMESPACE
    finally:
        helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=180s")
        kubeutil.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        install.install_kfn(paths, kfnimage.build(paths))


def _function(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "six-version", "namespace": namespace},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "source": {"inline": {"files": [{"name": "app.py", "content": HANDLER}]}},
            "dependencies": ["six==1.16.0"],
        },
    }


class BuildFailedError(Exception):
    """The build failed: waiting longer cannot help."""


def _ready(namespace: str, name: str) -> dict[str, Any]:
    """The Function once Ready; otherwise raises with its conditions (the wait's last error)."""
    fn = kubeutil.kubectl_json("-n", namespace, "get", "function", name)
    conditions = fn.get("status", {}).get("conditions", [])
    for cond in conditions:
        if cond["type"] == "BuildSucceeded" and cond["status"] == "False":
            raise BuildFailedError(f"the build failed: {cond['message']}")
        if cond["type"] == "Ready" and cond["status"] == "True":
            return dict(fn)
    seen = [
        (c["type"], c["status"], c.get("reason"), c.get("message", "")[:200]) for c in conditions
    ]
    raise AssertionError(f"not Ready yet: {seen}")


def test_the_released_images_are_multi_architecture_indexes(chart: tuple[str, str]) -> None:
    registry = local_registry.client()
    _, version = chart
    from kfn import oci  # noqa: PLC0415

    runtimes = [runtimeimages.repository(r) for r in runtimeimages.IMAGES]
    for repository in ("kfn/kfn", *runtimes):
        found = registry.get_manifest(oci.Reference(config.REGISTRY, repository, version))
        assert found is not None, repository
        doc = found[1]
        assert doc["mediaType"] == oci.MEDIA_INDEX
        platforms = [m["platform"] for m in doc["manifests"]]
        assert platforms == [{"architecture": "amd64", "os": "linux"}]


def test_the_chart_from_the_registry_builds_runs_and_answers_under_another_release(
    released: str,
) -> None:
    # The released chart names its kfn image by digest: a node that still holds an older
    # image pushed under the same version tag cannot run it instead.
    deployment = kubeutil.kubectl_json(
        "-n", NAMESPACE, "get", "deployment", f"{RELEASE}-kfn-activator"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "@sha256:" in container["image"], container["image"]
    kubeutil.apply(_function(released))
    fn = kubeutil.wait_for(
        "six-version Ready", lambda: _ready(released, "six-version"), timeout=420
    )
    url = fn["status"]["url"]
    # status.url names this release's invoke door, in its namespace.
    expected = f"http://{RELEASE}-kfn-invoke.{NAMESPACE}.svc.cluster.local"
    assert url == f"{expected}/_kfn/functions/{released}/six-version/invoke"
    service = kubeutil.kubectl_json("-n", NAMESPACE, "get", "service", f"{RELEASE}-kfn-invoke")
    direct = url.replace(expected, f"http://{service['spec']['clusterIP']}")
    # The development release (and its kfn-invoker role) is uninstalled meanwhile: the tests'
    # account may invoke here through this release's own role, bound in the namespace.
    kubeutil.apply({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "kfn-tests-invoke", "namespace": released},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": f"{RELEASE}-kfn-invoker"},
        "subjects": [{"kind": "ServiceAccount", "name": invoking.TESTS_ACCOUNT,
                      "namespace": install.NAMESPACE}],
    })  # fmt: skip
    token = invoking.bearer()

    def answer() -> dict[str, Any] | None:
        request = urllib.request.Request(direct, data=b"{}", method="POST", headers=token)  # noqa: S310
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - cluster URL
            return dict(json.loads(resp.read()))

    result = kubeutil.wait_for("an answer through the activator", answer, timeout=120, every=1)
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"six": "1.16.0", "ok": True}
    # The namespace's credential is a robot of that namespace, owned by its Function.
    secret = kubeutil.kubectl_json("-n", released, "get", "secret", "kfn-registry")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert [o["name"] for o in secret["metadata"]["ownerReferences"]] == ["six-version"]
    kubeutil.kubectl("-n", released, "delete", "function", "six-version", "--wait=true")


def test_helm_test_passes(released: str) -> None:
    # The test pod is deleted once it passed (a failed one stays for `kubectl logs`).
    result = helm("test", RELEASE, "--namespace", NAMESPACE, "--timeout=420s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Phase:          Succeeded" in result.stdout, result.stdout
    selector = "app.kubernetes.io/component=test"
    pods = kubeutil.kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "name")
    assert not pods.split()


def test_uninstall_leaves_nothing_of_kfn_but_the_crds(released: str) -> None:
    # Functions are the user's: they go first, and their children with them.
    kubeutil.kubectl("-n", released, "delete", "functions", "--all", "--wait=false")
    deadline = time.monotonic() + 120
    while kubeutil.kubectl("-n", released, "get", "functions", "-o", "name") and (
        time.monotonic() < deadline
    ):
        time.sleep(1)
    result = helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=180s")
    assert result.returncode == 0, result.stderr

    def nothing_left() -> bool:
        selector = f"app.kubernetes.io/instance={RELEASE}"
        kinds = "all,secrets,configmaps,serviceaccounts,roles,rolebindings,leases,pdb,jobs"
        left = kubeutil.kubectl("-n", NAMESPACE, "get", kinds, "-l", selector, "-o", "name")
        cluster_wide = kubeutil.kubectl(
            "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
        )
        managed = kubeutil.kubectl(
            "-n", NAMESPACE, "get", "secrets,configmaps,jobs,deployments,services",
            "-l", "app.kubernetes.io/managed-by=kfn", "-o", "name",
        )  # fmt: skip
        found = (left + cluster_wide + managed).split()
        assert not found, found
        return True

    kubeutil.wait_for("no kfn object left", nothing_left, timeout=120, every=2)
    crds = kubeutil.kubectl("get", "crd", "-o", "name")
    assert "functions.kfn.dev" in crds
    assert "triggers.kfn.dev" in crds
