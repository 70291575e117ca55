"""A namespace's registry credential as the operator issued it, and a registry client using it
(shared by the registry and tenancy tests)."""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any

from kfn import oci
from kfncluster import config
from kfncluster import registry as local_registry
from tests.cluster import kubeutil


def credential(namespace: str) -> oci.Credentials:
    def secret() -> dict[str, Any] | None:
        found = kubeutil.kubectl("-n", namespace, "get", "secret", "kfn-registry", "-o", "json",
                                 check=False)  # fmt: skip
        return json.loads(found) if found else None

    doc = kubeutil.wait_for(f"the registry credential of {namespace}", secret, timeout=60)
    data = base64.b64decode(doc["data"][".dockerconfigjson"])
    creds = oci.Credentials.from_docker_config(
        data, config.REGISTRY, f"Secret {namespace}/kfn-registry"
    )
    assert creds is not None
    return creds


def client(creds: oci.Credentials) -> oci.Registry:
    paths = config.Paths()
    return oci.Registry(
        config.REGISTRY, credentials=creds, ca_file=str(local_registry.ca_file(paths))
    )


def tiny_image(store_dir: pathlib.Path) -> oci.Image:
    store = oci.BlobStore(store_dir)
    layer = store.layer_from_members([])
    return store.image([layer], oci.ImageConfig(cmd=["true"]))
