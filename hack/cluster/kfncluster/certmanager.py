"""cert-manager on the local cluster: kfn's own small controller, and the local CA.

The module proxy serves cert-manager's library (``github.com/cert-manager/cert-manager``) but
not its binaries, so ``hack/cluster/gomod/cert-manager/main.go`` runs the library's CA and
SelfSigned issuers, its Certificate controllers and its ingress-shim (a Certificate for an
Ingress annotated ``cert-manager.io/cluster-issuer``, as kfn's Ingresses can be). There is
no webhook, cainjector or ACME solver: the CRDs (read from the module zip's ``deploy/crds``)
need no conversion, and the only issuers are the two below, which never reach off the machine.

The CA chain is ClusterIssuer ``kfn-selfsigned`` → Certificate ``kfn-local-ca`` (isCA, its
Secret in the cert-manager namespace) → ClusterIssuer ``kfn-local-ca``, which signs the
Gateway's certificates.
"""

from __future__ import annotations

import pathlib
from typing import Any

NAMESPACE = "cert-manager"
NAME = "cert-manager"
ROLE = "kfn:cert-manager"
LABELS = {"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/part-of": "kfn-gateway"}
SELFSIGNED_ISSUER = "kfn-selfsigned"
CA_ISSUER = "kfn-local-ca"
CA_CERTIFICATE = "kfn-local-ca"
CA_SECRET = "kfn-local-ca"  # noqa: S105 - a Secret's name
CRD_DIR = "deploy/crds"
#: Every CRD in the module's deploy/crds: the ACME ones too, since the library's informers
#: and the Issuer schema refer to them.
CRD_GLOB = "*cert-manager.io_*.yaml"

_READ = ["get", "list", "watch"]


def crd_files(module_dir: pathlib.Path) -> list[pathlib.Path]:
    """cert-manager's CRDs in its module's source (plain YAML, no templating)."""
    files = sorted((module_dir / CRD_DIR).glob(CRD_GLOB))
    if not files:
        raise RuntimeError(f"no cert-manager CRDs under {module_dir / CRD_DIR}")
    return files


def cluster_rules() -> list[dict[str, Any]]:
    """What the issuer, certificate and certificate-request controllers of main.go use: the
    chart's issuers, clusterissuers, certificates and approve roles, with no ACME orders or
    challenges, no Gateway shim and no leader election; and the chart's ingress-shim role,
    less its Gateway API and ACME HTTP-01 parts."""
    return [
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["certificates", "certificaterequests", "issuers", "clusterissuers"],
            "verbs": _READ,
        },
        {
            "apiGroups": ["cert-manager.io"],
            "resources": [
                "certificates",
                "certificates/status",
                "certificaterequests",
                "certificaterequests/status",
                "issuers",
                "issuers/status",
                "clusterissuers",
                "clusterissuers/status",
            ],
            "verbs": ["update", "patch"],
        },
        # The request manager makes a certificate's requests; the revision manager prunes them.
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["certificaterequests"],
            "verbs": ["create", "delete"],
        },
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["certificates/finalizers", "certificaterequests/finalizers"],
            "verbs": ["update"],
        },
        # The approver approves requests for cert-manager.io's own issuers only.
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["signers"],
            "verbs": ["approve"],
            "resourceNames": ["issuers.cert-manager.io/*", "clusterissuers.cert-manager.io/*"],
        },
        # Certificates' Secrets (in any namespace a Certificate is) and the issuers' keys.
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "list", "watch", "create", "update", "delete", "patch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        # The ingress-shim: a Certificate for each TLS Secret of an annotated Ingress, owned
        # by the Ingress (blockOwnerDeletion needs the finalizers' update).
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": _READ},
        {
            "apiGroups": ["networking.k8s.io"],
            "resources": ["ingresses/finalizers"],
            "verbs": ["update"],
        },
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["certificates"],
            "verbs": ["create", "delete"],
        },
    ]


def objects(image: str) -> list[dict[str, Any]]:
    """Namespace, ServiceAccount, RBAC and the controller's Deployment."""
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, **meta},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": ROLE, "labels": LABELS},
            "rules": cluster_rules(),
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": ROLE, "labels": LABELS},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": ROLE,
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, **meta},
            "spec": {
                "replicas": 1,
                # No leader election in main.go: never two at once.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "serviceAccountName": NAME,
                        "automountServiceAccountToken": True,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "controller",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "args": [f"--cluster-resource-namespace={NAMESPACE}"],
                                "resources": {
                                    "requests": {"cpu": "20m", "memory": "64Mi"},
                                    "limits": {"memory": "256Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True,
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


def issuers() -> list[dict[str, Any]]:
    """The local CA: a self-signed root, and the ClusterIssuer that signs with it."""
    api = "cert-manager.io/v1"
    return [
        {
            "apiVersion": api,
            "kind": "ClusterIssuer",
            "metadata": {"name": SELFSIGNED_ISSUER},
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": api,
            "kind": "Certificate",
            "metadata": {"name": CA_CERTIFICATE, "namespace": NAMESPACE},
            "spec": {
                "isCA": True,
                "commonName": "kfn local CA",
                "secretName": CA_SECRET,
                "duration": "87600h",
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {
                    "group": "cert-manager.io",
                    "kind": "ClusterIssuer",
                    "name": SELFSIGNED_ISSUER,
                },
            },
        },
        {
            "apiVersion": api,
            "kind": "ClusterIssuer",
            "metadata": {"name": CA_ISSUER},
            "spec": {"ca": {"secretName": CA_SECRET}},
        },
    ]


def certificate(namespace: str, name: str, dns_names: list[str]) -> dict[str, Any]:
    """A serving certificate from the local CA, in Secret ``name``."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": name,
            "dnsNames": dns_names,
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": CA_ISSUER},
        },
    }
