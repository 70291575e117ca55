"""A client of the local cluster's edge, as the host is one: requests to the node ports on the
node address with the host name as TLS SNI and ``Host`` (what ``curl --resolve`` does), the
certificate verified against the cluster CA. The Gateway's node ports by default
(:mod:`kfncluster.gateway`); Contour's (:mod:`kfncluster.ingress`) with ``port``."""

from __future__ import annotations

import ssl
from typing import Any

from kfncluster import cluster, config, gateway, gatewayinfra
from tests.cluster.kubeutil import wait_for


def ensure_gateway() -> str:
    """The local Gateway, installed if missing (as ``make up`` does); how the host reaches it."""
    paths = config.Paths()
    return gatewayinfra.install(
        paths, lambda *a, **kw: cluster.kubectl(paths, *a, **kw), lambda _: None
    )


def request(
    host: str,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    https: bool = True,
    port: int | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """One request for ``host`` to the node port ``port`` (the Gateway's for the scheme when
    None), its certificate verified against the CA."""
    if port is None:
        port = gateway.HOST_HTTPS_PORT if https else gateway.HOST_HTTP_PORT
    conn = gateway.connection(host, port, https=https, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": f"{host}:{port}", **(headers or {})})
        resp = conn.getresponse()
        headers: dict[str, str] = {}
        for name, value in resp.getheaders():  # repeated fields joined, as HTTP allows
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return resp.status, headers, resp.read()
    finally:
        conn.close()


def served(host: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    """The first answer that is not the edge's or activator's "not routed yet" (404, or 503
    from Envoy before its route reaches it); ``kwargs`` as :func:`request`'s."""

    def answer() -> tuple[int, dict[str, str], bytes] | None:
        try:
            status, headers, body = request(host, path, **kwargs)
        except (OSError, ssl.SSLError):
            return None
        return None if status in (404, 503) else (status, headers, body)

    return wait_for(f"{host}{path} to be served", answer, timeout=120, every=0.5)
