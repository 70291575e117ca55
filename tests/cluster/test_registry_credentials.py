"""Each namespace's registry credential is good for that namespace's images alone.

kfn issues a robot credential per function namespace (the ``kfn-registry`` Secret) that the
local registry's token service accepts for ``fn/<namespace>/*``: namespace A's credential can
neither push to nor pull from ``fn/B/*`` (the registry answers 401/403). A credential the
registry refuses ends the build with a message naming the Secret and the registry's answer;
a pull Secret that does not exist makes the Function Ready=False, naming it.
"""

from __future__ import annotations

import base64
import json
import pathlib
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kfn import oci
from kfncluster import config, fnimage
from kfncluster import registry as local_registry
from tests.cluster import kubeutil, registrycreds

pytestmark = pytest.mark.cluster

HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/credentials", "v1", {"app.py": HANDLER})


@pytest.fixture
def namespaces(kfn: str) -> Iterator[list[str]]:
    made: list[str] = []
    try:
        yield made
    finally:
        for namespace in made:
            kubeutil.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _namespace(made: list[str], prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubeutil.kubectl("create", "namespace", name)
    made.append(name)
    return name


def test_a_namespaces_credential_reaches_its_own_images_and_no_other_namespaces(
    namespaces: list[str], image: str
) -> None:
    a, b = _namespace(namespaces, "cred-a"), _namespace(namespaces, "cred-b")
    for namespace in (a, b):
        kubeutil.python_function(namespace, "fn", image)
    creds_a = registrycreds.credential(a)
    assert creds_a.username == f"kfn+{a}"
    registry_a = registrycreds.client(creds_a)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = registrycreds.tiny_image(pathlib.Path(tmp))
        # Its own repositories: push and pull.
        own = oci.Reference(config.REGISTRY, f"fn/{a}/mine", "v1")
        registry_a.push_image(tiny, own)
        assert registry_a.get_manifest(own) is not None
        # Another namespace's: the admin put an image there; A may neither read nor write.
        theirs = oci.Reference(config.REGISTRY, f"fn/{b}/theirs", "v1")
        local_registry.client().push_image(tiny, theirs)
        with pytest.raises(oci.RegistryAuthError) as pulled:
            registry_a.get_manifest(theirs)
        with pytest.raises(oci.RegistryAuthError) as pushed:
            registry_a.push_image(tiny, oci.Reference(config.REGISTRY, f"fn/{b}/planted", "v1"))
    for refused in (pulled.value, pushed.value):
        assert "HTTP 401" in str(refused) or "HTTP 403" in str(refused), refused
        assert f"Secret {a}/kfn-registry" in str(refused)


def _condition(namespace: str, name: str, kind: str) -> dict[str, Any] | None:
    fn = kubeutil.kubectl_json("-n", namespace, "get", "function", name)
    for cond in fn.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return None


def test_a_build_with_credentials_the_registry_refuses_names_the_secret_and_the_answer(
    namespaces: list[str],
) -> None:
    ns = _namespace(namespaces, "cred-wrong")
    wrong = {
        "auths": {config.REGISTRY: {"username": f"kfn+{ns}", "password": "v1.9999999999.nope"}}
    }
    kubeutil.kubectl(
        "-n", ns, "create", "secret", "generic", "kfn-registry",
        "--type=kubernetes.io/dockerconfigjson",
        f"--from-literal=.dockerconfigjson={json.dumps(wrong)}",
    )  # fmt: skip
    kubeutil.apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "refused", "namespace": ns},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "source": {"inline": {"files": [{"name": "app.py", "content": HANDLER}]}},
            },
        }
    )

    def refused() -> dict[str, Any] | None:
        cond = _condition(ns, "refused", "BuildSucceeded")
        return cond if cond and cond["status"] == "False" else None

    cond = kubeutil.wait_for("BuildSucceeded=False", refused, timeout=120)
    assert cond["reason"] == "RegistryRefused"
    assert f"Secret {ns}/kfn-registry" in cond["message"]
    assert "HTTP 401" in cond["message"], cond["message"]
    # kfn never overwrites a credential Secret it did not make.
    secret = kubeutil.kubectl_json("-n", ns, "get", "secret", "kfn-registry")
    assert json.loads(base64.b64decode(secret["data"][".dockerconfigjson"])) == wrong


def test_a_pull_secret_that_does_not_exist_makes_the_function_not_ready_naming_it(
    namespaces: list[str], image: str
) -> None:
    ns = _namespace(namespaces, "cred-pull")
    # An image only the admin may read: the namespace's own credential cannot pull it.
    source = oci.Reference.parse(image)
    hidden = oci.Reference(config.REGISTRY, "fn/elsewhere/hidden", "v1")
    admin = local_registry.client()
    found = admin.get_manifest(source)
    assert found is not None
    assert source.digest is not None
    for layer in found[1]["layers"] + [found[1]["config"]]:
        admin.mount_blob(hidden.repository, layer["digest"], source.repository)
    digest = admin.put_manifest(hidden, json.dumps(found[1]).encode(), found[1]["mediaType"])
    kubeutil.python_function(
        ns,
        "private",
        f"{config.REGISTRY}/{hidden.repository}@{digest}",
        imagePullSecrets=[{"name": "not-there"}],
        scale={"minReplicas": 1, "maxReplicas": 1},
    )

    def not_ready() -> dict[str, Any] | None:
        cond = _condition(ns, "private", "Ready")
        return cond if cond and cond["reason"] == "ImagePullSecretNotFound" else None

    cond = kubeutil.wait_for("Ready=False, ImagePullSecretNotFound", not_ready, timeout=120)
    assert cond["status"] == "False"
    assert "not-there" in cond["message"]
