"""The local cluster's Gateway: what other code needs to know to route through it.

``make up`` runs Envoy Gateway (:mod:`kfncluster.envoygateway`) with GatewayClass ``kfn`` and
one Gateway, ``kfn-gateway/kfn``, whose Envoy answers for ``*.kfn.localhost``:

==============  ====  ==============================  ===================  =================
listener        port  hostname                        TLS (Secret)         routes from
==============  ====  ==============================  ===================  =================
``http``        80    ``*.kfn.localhost``             none                 all namespaces
``https``       443   ``*.kfn.localhost``             :data:`TLS_SECRET`   all namespaces
``restricted``  443   ``*.restricted.kfn.localhost``  its own              its own namespace
==============  ====  ==============================  ===================  =================

The certificates come from the local CA (:mod:`kfncluster.certmanager`), whose certificate
bring-up writes to :func:`ca_file` so that ``curl --cacert`` verifies.

**How the host reaches it.** Envoy's Service is a NodePort Service with fixed node ports
(:data:`HOST_HTTP_PORT`, :data:`HOST_HTTPS_PORT`), which kube-proxy serves on the node address
alone (``nodePortAddresses``: the bridge's ``10.244.0.1``). A connection to a local address never
leaves the machine, even before kube-proxy's rules are in place, which is why a NodePort was
chosen over the Service's ClusterIP: a ClusterIP is no address of the host's, so a packet to it
that no rule rewrote would follow the default route out. Names under ``.localhost`` resolve to
loopback (curl does so itself), where nothing of the Gateway listens: reaching it from loopback
would need ``route_localnet``, which exposes the host's loopback services to its neighbours. So
the host names the node address for a name, as :func:`curl_args` does with ``--resolve``.

Pods reach the Gateway at the same address and ports, or at the Service's ClusterIP on 80/443.

**Envoy's pods** run in :data:`ENVOY_NAMESPACE` with :data:`ENVOY_POD_LABELS`; they are the only
pods that forward a client's request into the cluster, so they are the ones whose
``X-Forwarded-For`` can be believed.
"""

from __future__ import annotations

import http.client
import pathlib
import socket
import ssl
from typing import Any

from kfncluster import certmanager, config, envoygateway

#: Every host name the Gateway serves is ``<name>.kfn.localhost``.
DOMAIN = "kfn.localhost"
GATEWAY_CLASS = "kfn"
NAMESPACE = "kfn-gateway"
NAME = "kfn"
#: The EnvoyProxy (in Envoy Gateway's namespace) the GatewayClass points at.
ENVOY_PROXY = "kfn"

LISTENER_HTTP = "http"
LISTENER_HTTPS = "https"
#: Takes routes from the Gateway's own namespace only (``allowedRoutes.namespaces.from: Same``).
LISTENER_RESTRICTED = "restricted"
HOSTNAME = f"*.{DOMAIN}"
RESTRICTED_DOMAIN = f"restricted.{DOMAIN}"
RESTRICTED_HOSTNAME = f"*.{RESTRICTED_DOMAIN}"
#: The listeners' ports (Envoy listens on them plus 10000 inside its pod).
HTTP_PORT = 80
HTTPS_PORT = 443
TLS_SECRET = "kfn-gateway-tls"  # noqa: S105 - a Secret's name
RESTRICTED_TLS_SECRET = "kfn-gateway-restricted-tls"  # noqa: S105 - a Secret's name

#: Where the host (and pods) reach the Gateway: the node address and the Service's node ports.
HOST_ADDRESS = config.NODE_IP
HOST_HTTP_PORT = 30080
HOST_HTTPS_PORT = 30443
#: The Service port each node port stands for.
NODE_PORTS = {HTTP_PORT: HOST_HTTP_PORT, HTTPS_PORT: HOST_HTTPS_PORT}

#: Where Envoy Gateway runs the Gateway's Envoy pods, and the labels they carry: Envoy
#: Gateway's own (naming the Gateway) and kfn's.
ENVOY_NAMESPACE = envoygateway.NAMESPACE
ENVOY_POD_LABELS = {
    "app.kubernetes.io/name": "envoy",
    "app.kubernetes.io/component": "proxy",
    "app.kubernetes.io/managed-by": "envoy-gateway",
    "gateway.envoyproxy.io/owning-gateway-name": NAME,
    "gateway.envoyproxy.io/owning-gateway-namespace": NAMESPACE,
    "kfn.dev/gateway": f"{NAMESPACE}.{NAME}",
}
#: The CA certificate's file name, beside the kubeconfig bring-up writes.
CA_FILE_NAME = "gateway-ca.crt"


def ca_file(kubeconfig: pathlib.Path | None = None) -> pathlib.Path:
    """The local CA's certificate (PEM) on the host, beside ``kubeconfig`` (by default the
    one ``make up`` writes, ``.kfn/kubeconfig``)."""
    if kubeconfig is None:
        from kfncluster import cluster  # noqa: PLC0415 - the heavy module only when asked

        kubeconfig = cluster.kubeconfig_out()
    return kubeconfig.parent / CA_FILE_NAME


def host_name(name: str, *, restricted: bool = False) -> str:
    """``<name>.kfn.localhost`` (or ``<name>.restricted.kfn.localhost``)."""
    return f"{name}.{RESTRICTED_DOMAIN if restricted else DOMAIN}"


def url(host: str, path: str = "/", *, https: bool = True) -> str:
    """The URL the host uses for ``host`` (a full name), with the node port in it."""
    port = HOST_HTTPS_PORT if https else HOST_HTTP_PORT
    return f"{'https' if https else 'http'}://{host}:{port}{path}"


def curl_args(host: str, *, https: bool = True) -> list[str]:
    """curl's options that send ``host`` to the Gateway and verify its certificate."""
    port = HOST_HTTPS_PORT if https else HOST_HTTP_PORT
    args = ["--resolve", f"{host}:{port}:{HOST_ADDRESS}"]
    if https:
        args += ["--cacert", str(ca_file())]
    return args


def connection(
    host: str, port: int, *, https: bool = True, timeout: float = 30
) -> http.client.HTTPConnection:
    """A connection for ``host`` to node port ``port`` on :data:`HOST_ADDRESS`, made as
    ``curl --resolve`` makes it: with ``https``, TLS with ``host`` as SNI and the certificate
    verified against the local CA (:func:`ca_file`). The caller sends ``Host`` itself."""
    sock = socket.create_connection((HOST_ADDRESS, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    if https:
        context = ssl.create_default_context(cafile=str(ca_file()))
        sock = context.wrap_socket(sock, server_hostname=host)
    conn.sock = sock
    return conn


# --- the objects (pure) -----------------------------------------------------------------------


def envoy_proxy(envoy_image: str) -> dict[str, Any]:
    """How Envoy Gateway runs this Gateway's Envoy: the local image, small, a NodePort."""
    ports = [{"port": p, "nodePort": n} for p, n in NODE_PORTS.items()]
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyProxy",
        "metadata": {"name": ENVOY_PROXY, "namespace": envoygateway.NAMESPACE},
        "spec": {
            "provider": {
                "type": "Kubernetes",
                "kubernetes": {
                    "envoyDeployment": {
                        "replicas": 1,
                        "pod": {"labels": {"kfn.dev/gateway": f"{NAMESPACE}.{NAME}"}},
                        "container": {
                            "image": envoy_image,
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                        },
                    },
                    "envoyService": {
                        "type": "NodePort",
                        # Fixed node ports, so the host's URLs never change; merged by port.
                        "patch": {
                            "type": "StrategicMerge",
                            "value": {"spec": {"ports": ports}},
                        },
                    },
                },
            },
        },
    }


def gateway_class() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {
            "controllerName": envoygateway.CONTROLLER_NAME,
            "parametersRef": {
                "group": "gateway.envoyproxy.io",
                "kind": "EnvoyProxy",
                "name": ENVOY_PROXY,
                "namespace": envoygateway.NAMESPACE,
            },
        },
    }


def certificates() -> list[dict[str, Any]]:
    """The listeners' certificates: the wildcard of the domain, and of the restricted one
    (a wildcard certificate covers one label only)."""
    return [
        certmanager.certificate(NAMESPACE, TLS_SECRET, [HOSTNAME]),
        certmanager.certificate(NAMESPACE, RESTRICTED_TLS_SECRET, [RESTRICTED_HOSTNAME]),
    ]


def _listener(
    name: str, port: int, hostname: str, routes_from: str, secret: str | None
) -> dict[str, Any]:
    listener: dict[str, Any] = {
        "name": name,
        "port": port,
        "protocol": "HTTPS" if secret else "HTTP",
        "hostname": hostname,
        "allowedRoutes": {"namespaces": {"from": routes_from}},
    }
    if secret:
        listener["tls"] = {
            "mode": "Terminate",
            "certificateRefs": [{"group": "", "kind": "Secret", "name": secret}],
        }
    return listener


def gateway() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [
                _listener(LISTENER_HTTP, HTTP_PORT, HOSTNAME, "All", None),
                _listener(LISTENER_HTTPS, HTTPS_PORT, HOSTNAME, "All", TLS_SECRET),
                _listener(
                    LISTENER_RESTRICTED, HTTPS_PORT, RESTRICTED_HOSTNAME, "Same",
                    RESTRICTED_TLS_SECRET,
                ),
            ],
        },
    }  # fmt: skip


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
