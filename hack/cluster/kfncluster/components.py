"""The cluster's components: their config files and command lines.

Pure functions of :class:`config.Paths` and the binary directory, so the whole
shape of the cluster can be read (and tested) without starting anything.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import yaml

from kfncluster import brokers, config, kuberouter, proxies, registry


@dataclasses.dataclass(frozen=True)
class Component:
    """A process of the cluster, started in order, with a readiness check."""

    name: str
    argv: tuple[str, ...]
    ready: Callable[[], bool]
    timeout: float = 60.0


def containerd_config(paths: config.Paths) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
# Plugins that would write outside our directories or that this node cannot use.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{config.PAUSE_IMAGE}"
  # Pods' network namespaces under this cluster's own state, never in /var/run/netns, so
  # tear-down finds exactly ours.
  netns_mounts_under_state_dir = true
  # This VM's root lacks CAP_SYS_RESOURCE: a negative oom_score_adj cannot be set.
  restrict_oom_score_adj = true
  # Lets non-root containers bind ports below 1024 inside their own network namespace.
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  # No systemd here: cgroupfs it is.
  SystemdCgroup = false
  BinaryName = "/usr/sbin/runc"

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{paths.cni_conf_dir}"
  max_conf_num = 1

[{cri}.registry]
  # One hosts.toml per registry: the local one over HTTPS, trusting the cluster CA.
  config_path = "{registry.certs_dir(paths)}"
"""


def admission_config() -> str:
    """Pod Security admission: `baseline` everywhere, so no pod joins the host's network.

    A pod on the host network would bypass the egress guard on the pod bridge;
    `baseline` forbids hostNetwork, hostPort, hostPath and privileged pods in
    every namespace, kube-system included (nothing here needs them).
    """
    return yaml.safe_dump(
        {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [
                {
                    "name": "PodSecurity",
                    "configuration": {
                        "apiVersion": "pod-security.admission.config.k8s.io/v1",
                        "kind": "PodSecurityConfiguration",
                        "defaults": {
                            "enforce": "baseline",
                            "enforce-version": "latest",
                            "audit": "restricted",
                            "audit-version": "latest",
                            "warn": "restricted",
                            "warn-version": "latest",
                        },
                        "exemptions": {"usernames": [], "runtimeClasses": [], "namespaces": []},
                    },
                }
            ],
        }
    )


def kubelet_config(paths: config.Paths) -> str:
    pki = paths.pki
    return yaml.safe_dump(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": config.NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "cgroupDriver": "cgroupfs",
            # Pods under this cluster's own root, never in a kubepods another kubelet may own.
            "cgroupRoot": f"/{paths.cgroup_name}",
            # This machine has cgroup v1; 1.34 still accepts it when asked.
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
            "clusterDNS": [config.DNS_SERVICE_IP],
            "clusterDomain": config.CLUSTER_DOMAIN,
            # Pods never get the host's resolver: dnsPolicy Default resolves
            # through the cluster DNS too, and it has no upstream.
            "resolvConf": str(paths.config / "pod-resolv.conf"),
            "failSwapOn": False,
            "podLogsDir": str(paths.pod_logs),
            "serializeImagePulls": False,
            "maxPods": 200,
            "evictionHard": {
                "memory.available": "200Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
            },
            "imageGCHighThresholdPercent": 95,
            "imageGCLowThresholdPercent": 90,
            "cgroupsPerQOS": True,
            "enforceNodeAllocatable": ["pods"],
            "protectKernelDefaults": False,
            "makeIPTablesUtilChains": False,
            "registerNode": True,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "shutdownGracePeriod": "0s",
            "nodeStatusUpdateFrequency": "10s",
            "fileCheckFrequency": "20s",
            "syncFrequency": "10s",
            "oomScoreAdj": 0,
        },
        sort_keys=False,
    )


def kube_proxy_config(paths: config.Paths) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(paths.config / "kube-proxy.kubeconfig")},
            "hostnameOverride": config.NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": config.CLUSTER_CIDR,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{config.NODE_IP}/32"],
            "oomScoreAdj": 0,
            # Leave the host's conntrack settings alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"masqueradeAll": False, "syncPeriod": "30s", "minSyncPeriod": "0s"},
        },
        sort_keys=False,
    )


def write_configs(paths: config.Paths) -> None:
    paths.config.mkdir(parents=True, exist_ok=True)
    files = {
        "containerd.toml": containerd_config(paths),
        "admission.yaml": admission_config(),
        "kubelet.yaml": kubelet_config(paths),
        "kube-proxy.yaml": kube_proxy_config(paths),
        "pod-resolv.conf": f"nameserver {config.DNS_SERVICE_IP}\n",
    }
    for name, text in files.items():
        (paths.config / name).write_text(text)
    registry.write_configs(paths)
    proxies.write_configs(paths)
    brokers.write_configs(paths)


def argv(name: str, paths: config.Paths, bins: dict[str, pathlib.Path]) -> tuple[str, ...]:
    """The command line of component ``name``."""
    pki, cfg = paths.pki, paths.config
    table: dict[str, list[str]] = {
        "etcd": [
            str(bins["etcd"]),
            "--name=kfn",
            f"--data-dir={paths.etcd_data}",
            f"--listen-client-urls={config.ETCD_CLIENT_URL}",
            f"--advertise-client-urls={config.ETCD_CLIENT_URL}",
            f"--listen-peer-urls={config.ETCD_PEER_URL}",
            f"--initial-advertise-peer-urls={config.ETCD_PEER_URL}",
            f"--initial-cluster=kfn={config.ETCD_PEER_URL}",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            # A throw-away development store: losing it on a power cut is fine,
            # waiting for fsync on every write is not.
            "--unsafe-no-fsync",
            "--quota-backend-bytes=4294967296",
            "--auto-compaction-retention=10m",
            "--log-level=warn",
        ],
        "registry": ["/usr/bin/docker-registry", "serve", str(cfg / "registry.yaml")],
        "containerd": ["/usr/bin/containerd", "--config", str(cfg / "containerd.toml")],
        "kube-apiserver": [
            str(bins["kube-apiserver"]),
            f"--etcd-servers={config.ETCD_CLIENT_URL}",
            f"--bind-address={config.NODE_IP}",
            f"--advertise-address={config.NODE_IP}",
            f"--secure-port={config.APISERVER_PORT}",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-issuer=https://kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--admission-control-config-file={cfg / 'admission.yaml'}",
            "--allow-privileged=false",
            "--profiling=false",
            "--event-ttl=1h",
            "--endpoint-reconciler-type=lease",
            "--v=1",
        ],
        "kube-controller-manager": [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={cfg / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={cfg / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={cfg / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--v=1",
        ],
        "kube-scheduler": [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={cfg / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={cfg / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={cfg / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--v=1",
        ],
        "kubelet": [
            str(bins["kubelet"]),
            f"--config={cfg / 'kubelet.yaml'}",
            f"--kubeconfig={cfg / 'kubelet.kubeconfig'}",
            f"--root-dir={paths.kubelet_root}",
            f"--hostname-override={config.NODE_NAME}",
            f"--node-ip={config.NODE_IP}",
            "--v=1",
        ],
        "kube-proxy": [
            str(bins["kube-proxy"]),
            f"--config={cfg / 'kube-proxy.yaml'}",
            "--v=1",
        ],
    }
    if name == "registry-auth":
        return tuple(registry.auth_argv(paths))
    if name in PROXIES:
        return tuple(proxies.argv(name, paths))
    if name in BROKERS:
        return tuple(brokers.argv(name, paths, bins))
    if name == kuberouter.NAME:
        return tuple(kuberouter.argv(paths, bins))
    return tuple(table[name])


#: Start order. Each waits for the one before it to be ready, but the brokers: they start
#: once the node network exists, alongside the rest, and are waited for at the end; and
#: those of :data:`AFTER_NODE_READY`, started once the node is Ready.
ORDER = (
    "etcd",
    "registry-auth",
    "registry",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    kuberouter.NAME,
    "devpi",
    "verdaccio",
    "kafka",
    "nats",
)

#: The package proxies builds install dependencies through (see :mod:`kfncluster.proxies`).
#: Host processes like the rest, last in the order: nothing of the cluster itself needs them.
PROXIES = ("devpi", "verdaccio")

#: The event brokers (see :mod:`kfncluster.brokers`): host processes too, on the node address.
BROKERS = brokers.BROKERS

#: The NetworkPolicy enforcer (see :mod:`kfncluster.kuberouter`) reads its Node at start.
AFTER_NODE_READY = (kuberouter.NAME,)

#: Host processes a running cluster can gain without a restart (see ``cluster._add_missing``).
EXTRAS = PROXIES + BROKERS + AFTER_NODE_READY


def env(name: str) -> dict[str, str]:
    """Environment a component needs beyond the tool's own."""
    if name == "registry-auth":
        return registry.auth_env()
    return brokers.env(name)
