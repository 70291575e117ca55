"""Fixtures of the operator's unit tests (the loopback Kubernetes API, ``api``, is every unit
test's: :mod:`tests.unit.conftest`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kfn.api import function
from kfn.operator import reconcile, settings
from kfn.resources import build


@pytest.fixture
def network_policy_setting() -> str:
    """``KFN_NETWORK_POLICY`` under :func:`prebuilt_operator_env`: none (a module overrides this
    fixture to set the chart's)."""
    return ""


@pytest.fixture
def prebuilt_operator_env(
    monkeypatch: pytest.MonkeyPatch, network_policy_setting: str
) -> Iterator[None]:
    """The operator's settings for a Function ``team/web`` that runs a prebuilt image (nothing
    is built), read afresh; afterwards the operator forgets the Function."""
    for key, value in {
        "KFN_IMAGE_REGISTRY": "registry.local",
        "KFN_BUILDER_IMAGE": "registry.local/kfn/kfn:test",
        **{
            build.runtime_image_env(r): f"registry.local/kfn/runtime-{r}:test"
            for r in function.RUNTIMES
        },
        "KFN_REGISTRY_CREDENTIALS": "none",
        "KFN_INVOKE_URL": "http://kfn-invoke.kfn-system.svc.cluster.local",
        "KFN_NETWORK_POLICY": network_policy_setting,
    }.items():
        monkeypatch.setenv(key, value)
    _clear()
    yield
    _clear()
    reconcile.forget({"metadata": {"namespace": "team", "name": "web"}})


def _clear() -> None:
    settings.builds.cache_clear()
    settings.registry_credentials.cache_clear()
    settings.network_peers.cache_clear()
