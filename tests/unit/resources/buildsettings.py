"""Build settings as the operator would read them from a chart's values, for the build tests."""

from __future__ import annotations

from kfn.resources import build, platform

SETTINGS = build.BuildSettings(
    registry="registry.kfn.local:5000",
    builder_image="registry.kfn.local:5000/kfn/kfn@sha256:" + "1" * 64,
    runtime_images={
        "python3.11": "registry.kfn.local:5000/kfn/runtime-python@sha256:" + "2" * 64,
        "nodejs18": "registry.kfn.local:5000/kfn/runtime-nodejs@sha256:" + "3" * 64,
    },
    pypi_index_url="http://pypi.mirror.local/simple/",
    npm_registry="http://npm.mirror.local/",
    registry_ca_pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    platform=platform.Platform(
        credentials_secret="kfn-registry",
        pull_secrets=("cluster-pull",),
        builds=platform.Placement(
            node_selector={"kfn.dev/pool": "builds"},
            tolerations=({"key": "builds", "operator": "Exists", "effect": "NoSchedule"},),
            priority_class_name="kfn-builds",
        ),
    ),
)
