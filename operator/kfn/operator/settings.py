"""The operator's settings, read once from its environment (the chart sets it from its values)."""

from __future__ import annotations

import functools
import json
import os

from kfn import urls
from kfn.api import function, routes
from kfn.resources import bucket_events, build, credentials, exposure, network, platform, pools


@functools.cache
def builds() -> build.BuildSettings:
    """Build settings from the operator's environment (set by the chart's ``builder`` values)."""
    env = os.environ

    def need(name: str) -> str:
        value = env.get(name, "")
        if not value:
            raise RuntimeError(f"{name} is not set; the chart sets it from its values")
        return value

    return build.BuildSettings(
        registry=need("KFN_IMAGE_REGISTRY"),
        builder_image=need("KFN_BUILDER_IMAGE"),
        runtime_images={r: need(build.runtime_image_env(r)) for r in function.RUNTIMES},
        pypi_index_url=env.get("KFN_PYPI_INDEX_URL", ""),
        npm_registry=env.get("KFN_NPM_REGISTRY", ""),
        max_concurrent=int(env.get("KFN_MAX_CONCURRENT_BUILDS") or 2),
        deadline_seconds=int(env.get("KFN_BUILD_DEADLINE_SECONDS") or 900),
        resources=build.parse_resources(json.loads(env.get("KFN_BUILD_RESOURCES") or "null")),
        max_unpacked_mib=int(env.get("KFN_BUILD_MAX_UNPACKED_MIB") or 512),
        max_files=int(env.get("KFN_BUILD_MAX_FILES") or 20_000),
        allowed_networks=urls.parse_networks(
            json.loads(env.get("KFN_BUILD_ALLOWED_CIDRS") or "[]")
        ),
        registry_plain_http=env.get("KFN_REGISTRY_PLAIN_HTTP", "").lower() == "true",
        registry_ca_pem=env.get("KFN_REGISTRY_CA_PEM", ""),
        platform=platform.from_env(env),
    )


@functools.cache
def registry_credentials() -> credentials.Settings:
    """How Functions' namespaces get registry credentials (the chart's ``registry.credentials``)."""
    return credentials.from_env(os.environ, builds().registry)


@functools.cache
def max_function_timeout() -> float:
    """The longest Function timeout this installation serves, in seconds (the chart's
    ``functions.maxTimeoutSeconds``; the CRD's 15 minutes when unset)."""
    return float(os.environ.get("KFN_MAX_FUNCTION_TIMEOUT_SECONDS") or 900)


@functools.cache
def keep_logs() -> bool:
    """Whether the last lines of function pods that go are kept (the chart's
    ``functions.keepLogs``; on when unset)."""
    return os.environ.get("KFN_KEEP_LOGS", "true").lower() != "false"


@functools.cache
def host_policy() -> routes.HostPolicy:
    """Hosts the cluster admin assigned to namespaces, and the names of the shared default host
    (the chart's ``routes`` values and the activator's Service names): the activator is given
    the same, so both judge HTTP Triggers alike."""
    return routes.policy_from_json(os.environ.get("KFN_HOST_POLICY", ""))


@functools.cache
def network_peers() -> network.Peers | None:
    """Whom a Function's pods admit (the chart's ``networkPolicy`` values and the activator's pod
    labels), or None when the chart turns the policies off."""
    return network.peers_from_json(os.environ.get("KFN_NETWORK_POLICY", ""))


@functools.cache
def bucket_events_settings() -> bucket_events.Settings | None:
    """What each namespace's ``kfn-bucket-events`` Secret is made from (the bucket worker's
    key and Service, which the chart passes whatever ``bucket.events.auth`` says): None
    without a key, and then no Secret is written."""
    return bucket_events.from_env(os.environ)


@functools.cache
def exposure_settings() -> exposure.Settings | None:
    """How HTTP Triggers with a host and Function URLs reach the cluster's edge (the chart's
    ``exposure`` values and the activator's public Service), or None: not exposed."""
    return exposure.settings_from_json(os.environ.get("KFN_EXPOSURE", ""))


@functools.cache
def warm_pool_default_size() -> int:
    """Idle pods per pool in an opted-in namespace without the size annotation (the chart's
    ``warmPools.defaultSize``; 1 when unset). A bad value stops the operator at start."""
    value = os.environ.get("KFN_WARM_POOL_DEFAULT_SIZE", "")
    size = pools.parse_pool_size(value or None, 1)
    if isinstance(size, str):
        raise ValueError(
            f"KFN_WARM_POOL_DEFAULT_SIZE is {value!r}: it must be a whole number from 0 to "
            f"{pools.MAX_POOL_SIZE} (the chart's warmPools.defaultSize)"
        )
    return size


def warm_pools_enabled() -> bool:
    """Whether the installation keeps warm pools (the chart's ``warmPools.enabled``)."""
    return os.environ.get("KFN_WARM_POOLS", "on") == "on"


def pool_images() -> dict[str, str]:
    """The image of each runtime's pool pods: the runtime image functions are built on (the
    chart's ``builder.runtimeImages``), so a specialised pod runs what a built one would."""
    return dict(builds().runtime_images)
