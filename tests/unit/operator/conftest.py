"""Fixtures of the operator's unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from kfn import kube
from tests.unit.operator import kubeapi


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[kubeapi.KubeApi]:
    """The loopback stand-in of the Kubernetes API, which ``kfn.kube`` talks to."""
    fake = kubeapi.KubeApi()
    served = fake.serve()
    url = next(served)
    monkeypatch.setattr(kube, "_api", client.ApiClient(client.Configuration(host=url)))
    yield fake
    next(served, None)
