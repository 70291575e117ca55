"""Fixtures shared by every test: the local cluster and clients of it.

Cluster tests are marked ``cluster``. The session fixture reuses a running
cluster or brings one up (building it the first time on a machine), so
``pytest -m cluster`` works from a fresh clone.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from kfncluster import cluster as kfn_cluster
from kfncluster import config as cluster_config
from kfncluster import gatewayinfra, install, kfnimage, monitoring
from tests.cluster import kubeutil

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cluster() -> pathlib.Path:
    """The admin kubeconfig of a running local cluster (brought up if needed)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'hack' / 'cluster'}"}
    result = subprocess.run(
        [sys.executable, "-m", "kfncluster", "up"], cwd=REPO, env=env, check=False
    )
    if result.returncode != 0:
        pytest.fail("the local cluster did not come up; its progress and log paths are above")
    return kubeutil.KUBECONFIG


@pytest.fixture(scope="session")
def kube_api(cluster: pathlib.Path) -> Iterator[client.ApiClient]:
    """A ``kubernetes.client.ApiClient`` for the cluster, with kfn's CRDs installed."""
    kubeutil.apply_crds()
    api = config.new_client_from_config(config_file=str(cluster))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def gateway_infra(cluster: pathlib.Path) -> None:
    """The local Gateway (Envoy Gateway, cert-manager, Gateway ``kfn``), as `make up` installs
    it before kfn; a second install changes nothing."""
    paths = cluster_config.Paths()
    gatewayinfra.install(
        paths, lambda *a, **kw: kfn_cluster.kubectl(paths, *a, **kw), lambda note: None
    )


@pytest.fixture(scope="session")
def prometheus(cluster: pathlib.Path) -> str:
    """The monitoring add-on (the Prometheus Operator and Prometheus ``kfn``), as `make up`
    installs it before kfn; a second install changes nothing. Returns its namespace."""
    paths = cluster_config.Paths()
    monitoring.install(
        paths, lambda *a, **kw: kfn_cluster.kubectl(paths, *a, **kw), lambda note: None
    )
    return monitoring.NAMESPACE


@pytest.fixture(scope="session")
def kfn(cluster: pathlib.Path, gateway_infra: None, prometheus: str) -> str:
    """kfn installed with Helm from an image built from this tree (as `make up` does), after
    the monitoring add-on, so that the chart makes its ServiceMonitors.

    Returns the namespace kfn runs in.
    """
    paths = cluster_config.Paths()
    install.install_kfn(paths, kfnimage.build(paths))
    return install.NAMESPACE
