"""``make release``: kfn's images and chart, published to a registry as a version.

What a cluster admin installs with nothing from the source tree:

* ``<registry>/kfn/kfn:<version>``: the kfn image (operator, activator, autoscaler, workers,
  builder, token service, helm test);
* ``<registry>/kfn/runtime-<runtime>:<version>`` for each runtime made here
  (:data:`kfncluster.runtimeimages.IMAGES`);
* ``oci://<registry>/charts/kfn``, version ``<version>``: the chart, its ``image.registry``
  set to ``<registry>`` and its ``image.digest`` to the kfn index just pushed, so its
  defaults name exactly these images, even on a node that still holds an image once
  pushed under the same version tag (the chart pulls IfNotPresent).

Every image tag is an OCI image index (a multi-architecture manifest list) whose entries name
their platform, so a node pulls the manifest of its own; this machine builds ``linux/amd64``
only (the kfn image's per-platform manifest also keeps the tag ``<version>-linux-amd64``).

The local cluster's registry is the default target (``make release`` pushes as its admin);
the chart is pushed with ``helm push``, as any OCI chart repository expects.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile

import yaml

from kfn import oci
from kfncluster import build, config, host, kfnimage, runtimeimages
from kfncluster import registry as local_registry

REPO = pathlib.Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "kfn"
PLATFORM = oci.PLATFORM
PLATFORM_TAG = "linux-amd64"


def chart_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["version"])


def _index(registry: oci.Registry, source: oci.Reference, version: str) -> str:
    """Tags ``<version>`` of ``source``'s repository as an index holding ``source``."""
    found = registry.descriptor(source)
    if found is None:
        raise RuntimeError(f"{source} is not in the registry")
    digest, size, media_type = found
    target = oci.Reference(source.registry, source.repository, version)
    return registry.push_index(target, [(digest, size, media_type, PLATFORM)])


def publish_images(paths: config.Paths, version: str) -> dict[str, str]:
    """Builds and pushes the kfn and runtime images as ``<version>`` indexes."""
    registry = local_registry.client(paths)
    images = [kfnimage.build(paths, tag=f"{version}-{PLATFORM_TAG}")]
    images += runtimeimages.push_all().values()
    published = {}
    for image in images:
        source = oci.Reference.parse(image)
        published[source.repository] = _index(registry, source, version)
    return published


def package_chart(version: str, registry: str, out: pathlib.Path, digest: str = "") -> pathlib.Path:
    """``helm package`` of the chart with its version, ``image.registry`` and, when given,
    ``image.digest`` set."""
    staging = out / "kfn"
    shutil.copytree(CHART, staging)
    chart = yaml.safe_load((staging / "Chart.yaml").read_text())
    chart["version"] = version
    chart["appVersion"] = version
    (staging / "Chart.yaml").write_text(yaml.safe_dump(chart, sort_keys=False))
    values = (staging / "values.yaml").read_text()
    for key, value in (("registry", registry), ("digest", digest)):
        marker = f'  {key}: ""\n'
        if marker not in values:
            raise RuntimeError(f"charts/kfn/values.yaml has no empty image.{key} to set")
        if value:
            values = values.replace(marker, f"  {key}: {json.dumps(value)}\n", 1)
    (staging / "values.yaml").write_text(values)
    helm = build.binaries(config.Paths())["helm"]
    host.run([str(helm), "package", str(staging), "--destination", str(out)])
    return out / f"kfn-{version}.tgz"


def push_chart(paths: config.Paths, package: pathlib.Path, work: pathlib.Path) -> str:
    """``helm push`` to ``oci://<registry>/charts`` as the admin; returns the chart's URL."""
    helm = build.binaries(paths)["helm"]
    registry_config = work / "registry.json"
    ca = str(local_registry.ca_file(paths))
    common = [f"--registry-config={registry_config}"]
    host.run(
        [str(helm), "registry", "login", config.REGISTRY, *common, f"--ca-file={ca}",
         "--username", local_registry.ADMIN, "--password-stdin"],
        input=local_registry.admin_password(paths),
    )  # fmt: skip
    host.run([str(helm), "push", str(package), f"oci://{config.REGISTRY}/charts", *common,
              f"--ca-file={ca}"])  # fmt: skip
    return f"oci://{config.REGISTRY}/charts/kfn"


def release(paths: config.Paths, version: str | None = None) -> tuple[str, str]:
    """Publishes everything; returns the chart's OCI URL and its version."""
    version = version or chart_version()
    published = publish_images(paths, version)
    kfn_repository = oci.Reference.parse(f"{kfnimage.REPOSITORY}:{version}").repository
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        package = package_chart(version, config.REGISTRY, work, digest=published[kfn_repository])
        url = push_chart(paths, package, work)
    return url, version
