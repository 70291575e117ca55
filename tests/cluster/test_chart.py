"""The kfn Helm chart's objects are valid for the running Kubernetes, and its NOTES say what to do.

What ``helm template`` renders is tested without a cluster (``tests/unit/chart``). These ask
the cluster's API server, storing nothing: a server-side dry run proves the objects are valid
for the running Kubernetes (and that every pod passes the restricted Pod Security Standard),
and ``helm install --dry-run=server`` renders NOTES.txt, which ``helm template`` leaves out.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import config
from tests.cluster import kubeutil
from tests.unit.chart import chart

pytestmark = pytest.mark.cluster

HELM = config.Paths().bin / "helm"


@pytest.fixture(scope="module")
def helm(cluster: pathlib.Path) -> pathlib.Path:
    """The helm binary the cluster tool built (the ``cluster`` fixture makes sure it exists)."""
    assert HELM.is_file(), f"{HELM} is missing; `make cluster` builds it"
    return HELM


@pytest.fixture
def restricted_namespace(cluster: pathlib.Path) -> Iterator[str]:
    """A throwaway namespace enforcing (and warning about) the restricted Pod Security Standard."""
    name = f"kfn-chart-{uuid.uuid4().hex[:8]}"
    kubeutil.kubectl("create", "namespace", name)
    try:
        kubeutil.kubectl(
            "label",
            "namespace",
            name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        )
        yield name
    finally:
        kubeutil.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _dry_run(namespace: str, objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    body = {"apiVersion": "v1", "kind": "List", "items": objects}
    return subprocess.run(
        [
            str(kubeutil.KUBECTL),
            f"--kubeconfig={kubeutil.KUBECONFIG}",
            "apply",
            "--dry-run=server",
            "--validate=strict",
            f"--namespace={namespace}",
            "-f",
            "-",
        ],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_api_server_accepts_every_object_and_the_restricted_standard_admits_the_pod(
    helm: pathlib.Path, restricted_namespace: str
) -> None:
    objects = chart.render(helm, release=f"dry-{restricted_namespace}")
    for obj in objects:
        if "namespace" in obj["metadata"]:
            obj["metadata"]["namespace"] = restricted_namespace
    result = _dry_run(restricted_namespace, objects)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr

    # Pod Security admission only enforces on pods, so submit each Deployment's pod as one.
    # It runs as the namespace's "default" account, which the dry run above did not create.
    kubeutil.wait_for(
        "the namespace's default ServiceAccount",
        lambda: kubeutil.kubectl(
            "get", "serviceaccount", "default", "-n", restricted_namespace, check=False
        ),
    )
    for component in chart.WORKLOADS:
        template = chart.one(objects, "Deployment", component)["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"kfn-{component}-dry-run",
                "labels": template["metadata"]["labels"],
            },
            "spec": template["spec"] | {"serviceAccountName": "default"},
        }
        result = _dry_run(restricted_namespace, [pod])
        assert result.returncode == 0, (component, result.stderr)


def _notes(helm: pathlib.Path, values: dict[str, Any] | None = None) -> str:
    """NOTES.txt as ``helm install --dry-run=server`` prints it; nothing is installed."""
    suffix = uuid.uuid4().hex[:8]
    result = chart.run_helm(
        helm,
        "install",
        f"notes-{suffix}",
        str(chart.CHART),
        "--namespace",
        f"kfn-notes-{suffix}",
        "--kubeconfig",
        str(kubeutil.KUBECONFIG),
        "--dry-run=server",
        values=values,
    )
    assert result.returncode == 0, result.stderr
    _, marker, notes = result.stdout.partition("\nNOTES:\n")
    assert marker, f"no NOTES in: {result.stdout[-2000:]}"
    return notes


def test_the_notes_give_the_next_steps_and_no_warning_by_default(helm: pathlib.Path) -> None:
    notes = _notes(helm)
    assert "WARNING" not in notes
    assert "rollout status deployment/notes-" in notes
    assert "kubectl apply -f examples/hello/function.yaml" in notes
    assert "kubectl get fn" in notes
    assert "docs/install.md" in notes
    assert notes.index("examples/hello/function.yaml") < notes.index("docs/install.md")


def test_the_notes_put_warnings_first(helm: pathlib.Path) -> None:
    notes = _notes(helm, {"rbac": {"create": False}, "operator": {"logLevel": "DEBUG"}})
    assert notes.startswith("WARNING: rbac.create is false")
    assert "WARNING: operator.logLevel is DEBUG" in notes
    assert notes.rindex("WARNING") < notes.index("kubectl apply -f examples/hello/function.yaml")


def test_the_notes_warn_when_the_default_service_account_gets_the_permissions(
    helm: pathlib.Path,
) -> None:
    notes = _notes(helm, {"serviceAccount": {"create": False}})
    assert notes.startswith("WARNING: serviceAccount.create is false")
    assert '"default" ServiceAccount' in notes


def test_the_notes_warn_that_shared_credentials_are_copied_into_every_namespace(
    helm: pathlib.Path,
) -> None:
    values = {"registry": {"credentials": {"mode": "shared", "shared": {"secretName": "one"}}}}
    assert "every namespace with a Function gets a copy" in _notes(helm, values)


def test_the_notes_warn_when_internal_endpoints_take_anyone(helm: pathlib.Path) -> None:
    notes = _notes(
        helm, {"autoscaler": {"statsAuth": "none"}, "bucket": {"events": {"auth": "none"}}}
    )
    assert "WARNING: autoscaler.statsAuth is none" in notes
    assert "WARNING: bucket.events.auth is none" in notes
