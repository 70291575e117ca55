"""kfn's Ingress path (``exposure.mode: ingress``) against a real Ingress controller: Contour,
with cert-manager's ingress-shim issuing the Ingress's certificate from its annotation.

The kfn release on the local cluster runs with ``exposure.mode: gateway``, and other work
shares it, so it is never reinstalled here. Instead this process runs kfn's own exposure code
(:func:`kfn.operator.exposure.expose` and ``withdraw``, with ``kfn.kube`` speaking as the
admin) with the settings the chart would pass for ``mode: ingress``, for a real HTTP Trigger
of a real Function: the activator routes the Trigger's host because the Trigger exists,
whichever edge the request came through.

Requests go from this process to Contour's Envoy on its node port on the node address
(:mod:`kfncluster.ingress`), with the host name as TLS SNI and ``Host``, the certificate
verified against the local CA.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from kfn import kube
from kfn.api import trigger as trigger_api
from kfn.operator import exposure as operator_exposure
from kfn.resources import exposure, objects
from kfncluster import certmanager, contour, fnimage, gateway, ingress, install
from tests.cluster.edge import served
from tests.cluster.invoking import deploy
from tests.cluster.kubeutil import (
    KUBECONFIG,
    apply,
    kubectl,
    kubectl_json,
    push_python_app,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)

pytestmark = pytest.mark.cluster

HANDLER = """\
import json


def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"rawPath": event["rawPath"], "host": event["headers"].get("host")}),
    }
"""

ACTIVATOR = "kfn-activator"
FORCE_SSL_REDIRECT = "ingress.kubernetes.io/force-ssl-redirect"


@pytest.fixture(scope="module")
def release(gateway_infra: None) -> str:
    """kfn's release as ``make up`` installed it (never reinstalled here), with Contour beside
    the Gateway (``gateway_infra`` installs whatever is missing); kfn's namespace."""
    found = kubectl("-n", install.NAMESPACE, "get", "service", ACTIVATOR, "-o", "name", check=False)
    if not found.strip():
        pytest.fail(f"no {install.NAMESPACE}/{ACTIVATOR}: install kfn first (make up)")
    return install.NAMESPACE


@pytest.fixture(scope="module")
def as_admin(release: str) -> Iterator[None]:
    """``kfn.kube`` in this process, speaking as the cluster admin (the kubeconfig bring-up
    writes), so that kfn's exposure code runs here rather than in the operator."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(KUBECONFIG))
        mp.setattr(kube, "_api", None)
        try:
            yield
        finally:
            if kube._api is not None:
                kube._api.close()


@pytest.fixture(scope="module")
def namespace(release: str) -> Iterator[str]:
    with scratch_namespace("ingress") as name:
        yield name


@pytest.fixture(scope="module")
def settings(release: str, namespace: str) -> exposure.Settings:
    """What the chart passes for ``exposure.mode: ingress`` with Contour and cert-manager
    issuing each Ingress's certificate (no shared Secret)."""
    return exposure.Settings(
        mode="ingress",
        backend=exposure.Backend(release, ACTIVATOR, 80),
        port=ingress.HOST_HTTPS_PORT,
        ingress=exposure.Ingress(
            class_name=ingress.CLASS_NAME,
            annotations={
                exposure.ANNOTATION_CERT_CLUSTER_ISSUER: certmanager.CA_ISSUER,
                # Contour serves a TLS Ingress on plain HTTP too unless told to redirect.
                FORCE_SSL_REDIRECT: "true",
            },
        ),
    )


@dataclasses.dataclass
class Exposed:
    """The Trigger kfn exposed through an Ingress, and when."""

    exposed: exposure.Exposed
    ingress: str
    first: exposure.Verdict
    started: float


@pytest.fixture(scope="module")
def exposed(as_admin: None, namespace: str, settings: exposure.Settings) -> Iterator[Exposed]:
    """An HTTP Trigger with a host under kfn.localhost on a Function at zero, and kfn's
    ``expose`` called once for it in ingress mode; withdrawn and cleaned up afterwards."""
    image = fnimage.push_python_function("tests/ingress", "v1", {"app.py": HANDLER})
    deploy(namespace, "site", image, scale={"idleTimeout": "5s"})
    host = f"api-{namespace}.{gateway.DOMAIN}"
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "api", "namespace": namespace},
            "spec": {"functionRef": {"name": "site"}, "http": {"host": host, "pathPrefix": "/api"}},
        }
    )
    body = wait_for(
        "Trigger api Ready",
        lambda: _ready(kubectl_json("-n", namespace, "get", "trigger", "api")),
        timeout=120,
        every=0.5,
    )
    found = exposure.of_trigger(trigger_api.Trigger.model_validate(body))
    assert found is not None
    name = exposure.ingress_name(found)
    started = time.monotonic()
    first = operator_exposure.expose(found, settings)
    try:
        yield Exposed(found, name, first, started)
    finally:
        operator_exposure.withdraw("Trigger", namespace, "api", settings)
        secret = settings.ingress.secret_for(name)
        kubectl("-n", settings.backend.namespace, "delete", "certificate", secret,
                "--ignore-not-found")  # fmt: skip
        kubectl("-n", settings.backend.namespace, "delete", "secret", secret, "--ignore-not-found")


def _ready(body: dict[str, Any]) -> dict[str, Any] | None:
    conds = {c["type"]: c["status"] for c in body.get("status", {}).get("conditions", [])}
    return body if conds.get("Ready") == "True" else None


def _certificate(namespace: str, name: str) -> dict[str, Any] | None:
    found = kubectl("-n", namespace, "get", "certificate", name, "-o", "json", "--ignore-not-found")
    return json.loads(found) if found.strip() else None


def _live_ingress(exposed: Exposed, settings: exposure.Settings) -> dict[str, Any] | None:
    return kube.get(
        exposure.INGRESS_API_VERSION, "Ingress", settings.backend.namespace, exposed.ingress
    )


def test_kfn_writes_the_ingress_in_its_own_namespace_labelled_with_the_owner(
    exposed: Exposed, settings: exposure.Settings, namespace: str
) -> None:
    live = _live_ingress(exposed, settings)
    assert live is not None
    labels = live["metadata"]["labels"]
    assert labels[objects.LABEL_MANAGED_BY] == objects.MANAGER
    assert labels[exposure.LABEL_ROUTE_OF] == "Trigger"
    assert labels[exposure.LABEL_TRIGGER] == "api"
    assert labels[exposure.LABEL_NAMESPACE] == namespace
    assert live["metadata"]["annotations"] == dict(settings.ingress.annotations)
    spec = live["spec"]
    assert spec["ingressClassName"] == ingress.CLASS_NAME
    assert spec["tls"] == [
        {"hosts": [exposed.exposed.host], "secretName": f"{exposed.ingress}-tls"}
    ]
    (rule,) = spec["rules"]
    assert rule["host"] == exposed.exposed.host
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/api", "Prefix")
    assert path["backend"] == {"service": {"name": ACTIVATOR, "port": {"number": 80}}}
    # Until the controller publishes an address, the owner hears "exposing", not "exposed".
    assert exposed.first.status != "True"


def test_cert_manager_issues_the_ingress_certificate_from_its_annotation(
    exposed: Exposed, settings: exposure.Settings
) -> None:
    where = settings.backend.namespace
    secret_name = settings.ingress.secret_for(exposed.ingress)

    def ready() -> dict[str, Any] | None:
        cert = _certificate(where, secret_name)
        conds = (cert or {}).get("status", {}).get("conditions", [])
        return cert if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else None

    cert = wait_for(f"Certificate {secret_name} Ready", ready, timeout=120, every=0.5)
    took = time.monotonic() - exposed.started
    print(f"\ncertificate issued from the Ingress's annotation: {took:.2f}s after expose")
    (owner,) = cert["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("Ingress", exposed.ingress)
    assert cert["spec"]["issuerRef"]["name"] == certmanager.CA_ISSUER
    secret = kubectl_json("-n", where, "get", "secret", secret_name)
    assert secret["type"] == "kubernetes.io/tls"
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [exposed.exposed.host]
    ca = x509.load_pem_x509_certificate(gateway.ca_file().read_bytes())
    assert leaf.issuer == ca.subject


def test_contour_publishes_an_address_and_kfns_verdict_turns_true(
    exposed: Exposed, settings: exposure.Settings
) -> None:
    def verdict() -> exposure.Verdict | None:
        # As the operator does on each of the Ingress's events: apply (no change) and read.
        found = operator_exposure.expose(exposed.exposed, settings)
        return found if found.status == "True" else None

    found = wait_for("the Ingress's address", verdict, timeout=120, every=0.5)
    took = time.monotonic() - exposed.started
    print(f"\nContour published the Ingress's address: {took:.2f}s after expose")
    url = ingress.url(exposed.exposed.host, "/api")
    assert found.reason == "Exposed"
    assert found.message == f"served at {url} through an Ingress at {ingress.HOST_ADDRESS}"


def test_https_through_contour_answers_the_function_from_zero(
    exposed: Exposed, namespace: str
) -> None:
    wait_at_zero(namespace, "site", timeout=90)
    started = time.monotonic()
    status, _, body = served(exposed.exposed.host, "/api/items", port=ingress.HOST_HTTPS_PORT)
    took = time.monotonic() - started
    print(f"\nfirst HTTPS answer through Contour from zero: {took:.2f}s")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["rawPath"] == "/api/items"
    assert answer["host"] == f"{exposed.exposed.host}:{ingress.HOST_HTTPS_PORT}"


def test_plain_http_through_contour_is_redirected_to_https(exposed: Exposed) -> None:
    host = exposed.exposed.host
    status, headers, _ = served(host, "/api/a?b=c", https=False, port=ingress.HOST_HTTP_PORT)
    print(f"\nplain HTTP through Contour: {status} to {headers.get('location')}")
    assert status == 301
    location = urllib.parse.urlsplit(headers["location"])
    assert (location.scheme, location.hostname) == ("https", host)
    assert (location.path, location.query) == ("/api/a", "b=c")
    # Envoy keeps the port the client named in Host: on port 80 none, here the HTTP node port,
    # so on this cluster the redirect is not one to follow (the Gateway's names 30443).
    assert location.port == ingress.HOST_HTTP_PORT


def _served_names(host: str) -> list[str] | None:
    """The DNS names of the certificate Contour's Envoy presents for ``host`` (None until it
    completes a handshake for it), read without verifying it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        raw = socket.create_connection((ingress.HOST_ADDRESS, ingress.HOST_HTTPS_PORT), timeout=5)
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    if der is None:
        return None
    leaf = x509.load_der_x509_certificate(der)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.DNSName)


def test_a_second_exposed_host_gets_a_certificate_for_its_name(
    exposed: Exposed, settings: exposure.Settings, namespace: str
) -> None:
    host = f"web-{namespace}.{gateway.DOMAIN}"
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"functionRef": {"name": "site"}, "http": {"host": host}},
        }
    )
    second: exposure.Exposed | None = None
    try:
        body = wait_for(
            "Trigger web Ready",
            lambda: _ready(kubectl_json("-n", namespace, "get", "trigger", "web")),
            timeout=120,
            every=0.5,
        )
        second = exposure.of_trigger(trigger_api.Trigger.model_validate(body))
        assert second is not None
        wait_for(
            "the second Ingress's address",
            lambda: operator_exposure.expose(second, settings).status == "True",
            timeout=120,
            every=0.5,
        )
        names = wait_for(f"a TLS handshake for {host}", lambda: _served_names(host), timeout=60)
        print(f"\ncertificate served for {host}: {names}")
        assert host in names
    finally:
        operator_exposure.withdraw("Trigger", namespace, "web", settings)
        kubectl("-n", namespace, "delete", "trigger", "web", "--ignore-not-found")
        if second is not None:
            secret = settings.ingress.secret_for(exposure.ingress_name(second))
            kubectl("-n", settings.backend.namespace, "delete", "secret", secret,
                    "--ignore-not-found")  # fmt: skip


def test_withdraw_removes_the_ingress(
    exposed: Exposed, settings: exposure.Settings, namespace: str
) -> None:
    operator_exposure.withdraw("Trigger", namespace, "api", settings)
    assert _live_ingress(exposed, settings) is None
    # The certificate goes with the Ingress that owns it (the Secret stays, as cert-manager
    # leaves it; the fixture removes it).
    where = settings.backend.namespace
    wait_for(
        "the Ingress's Certificate to go",
        lambda: _certificate(where, settings.ingress.secret_for(exposed.ingress)) is None,
        timeout=60,
    )


def test_the_ingress_constants_name_what_is_installed(release: str) -> None:
    service = kubectl_json("-n", ingress.NAMESPACE, "get", "service", "envoy")
    node_ports = {p["port"]: p["nodePort"] for p in service["spec"]["ports"]}
    assert node_ports == {80: ingress.HOST_HTTP_PORT, 443: ingress.HOST_HTTPS_PORT}
    selector = ",".join(f"{k}={v}" for k, v in ingress.ENVOY_POD_LABELS.items())
    pods = kubectl_json("-n", ingress.NAMESPACE, "get", "pods", "-l", selector)["items"]
    assert pods
    assert kubectl_json("get", "ingressclass", ingress.CLASS_NAME)["spec"]["controller"] == (
        ingress.CONTROLLER
    )
    assert release == ingress.WATCHED_NAMESPACE


#: One bounded TCP connection attempt from a pod: ``ok``, ``refused`` (kube-router REJECTs)
#: or ``timeout``.
CONNECT = """\
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("ok")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""


def test_only_contours_envoy_may_reach_its_xds_port(namespace: str) -> None:
    image = push_python_app("tests/ingress-probe", "v1", {"connect.py": CONNECT}, ["sleep"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["sleep", "infinity"],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
        },
    }
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/probe", "--timeout=120s")

    def ip_of(selector: dict[str, str]) -> str:
        labels = ",".join(f"{k}={v}" for k, v in selector.items())
        (found,) = kubectl_json("-n", contour.NAMESPACE, "get", "pods", "-l", labels)["items"]
        return str(found["status"]["podIP"])

    def connect(ip: str, port: int) -> str:
        return kubectl("-n", namespace, "exec", "probe", "--", "python3", "/app/connect.py",
                       ip, str(port)).strip()  # fmt: skip

    # The pod reaches Contour's pods at all (Envoy's stats port has no policy)...
    assert connect(ip_of(contour.ENVOY_SELECTOR), contour.ENVOY_STATS_PORT) == "ok"
    # ...but not Contour's xDS server, which holds every Ingress's private key.
    assert connect(ip_of(contour.CONTOUR_SELECTOR), contour.XDS_PORT) in ("refused", "timeout")
