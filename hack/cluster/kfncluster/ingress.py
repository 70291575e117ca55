"""The local cluster's Ingress controller: what other code needs to know to route through it.

``make up`` runs Contour (:mod:`kfncluster.contour`) beside the Gateway, so that kfn's
``exposure.mode: ingress`` is tried against a real Ingress controller: Ingresses of class
:data:`CLASS_NAME` in :data:`WATCHED_NAMESPACE` are served by its own Envoy, whose Service is a
NodePort with fixed node ports (:data:`HOST_HTTP_PORT`, :data:`HOST_HTTPS_PORT`) on the node
address, for the reasons :mod:`kfncluster.gateway` gives for the Gateway's. The host reaches it
with ``curl --resolve <host>:31443:10.244.0.1`` (:func:`curl_args`); a certificate that
cert-manager issued from the local CA verifies against :func:`kfncluster.gateway.ca_file`.

Contour publishes :data:`HOST_ADDRESS` in each Ingress's ``status.loadBalancer``: that is the
sign kfn reads as "exposed".
"""

from __future__ import annotations

from kfncluster import config, gateway

#: The IngressClass Contour serves; not the cluster's default, so an Ingress without a class
#: is nobody's.
CLASS_NAME = "contour"
CONTROLLER = "projectcontour.io/ingress-controller"
#: The one namespace Contour watches: kfn's, where every Ingress kfn writes lives (an Ingress
#: reaches only Services of its own namespace). ``kfncluster.install.NAMESPACE``.
WATCHED_NAMESPACE = "kfn-system"

#: Where the host (and pods) reach Contour's Envoy: the node address and its node ports.
HOST_ADDRESS = config.NODE_IP
HOST_HTTP_PORT = 31080
HOST_HTTPS_PORT = 31443
#: Envoy's listeners inside its pod (Contour's defaults: unprivileged ports).
ENVOY_HTTP_PORT = 8080
ENVOY_HTTPS_PORT = 8443

#: Where Contour and its Envoy run, and the labels of the Envoy pods: the only pods that
#: forward a client's request through an Ingress.
NAMESPACE = "projectcontour"
ENVOY_POD_LABELS = {
    "app.kubernetes.io/name": "envoy",
    "app.kubernetes.io/component": "ingress-proxy",
    "app.kubernetes.io/part-of": "kfn-ingress",
}


def url(host: str, path: str = "/", *, https: bool = True) -> str:
    """The URL the host uses for ``host`` (a full name) through Contour, node port included."""
    port = HOST_HTTPS_PORT if https else HOST_HTTP_PORT
    return f"{'https' if https else 'http'}://{host}:{port}{path}"


def curl_args(host: str, *, https: bool = True) -> list[str]:
    """curl's options that send ``host`` to Contour's Envoy and verify its certificate against
    the local CA."""
    port = HOST_HTTPS_PORT if https else HOST_HTTP_PORT
    args = ["--resolve", f"{host}:{port}:{HOST_ADDRESS}"]
    if https:
        args += ["--cacert", str(gateway.ca_file())]
    return args
