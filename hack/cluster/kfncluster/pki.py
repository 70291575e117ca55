"""Certificates and kubeconfigs for the local cluster.

One CA signs everything: the API server's serving certificate, the kubelet's
serving certificate, and a client certificate per component. Files are made
once and reused; a missing file is made again from the CA.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import pathlib
import secrets

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kfncluster import config

VALIDITY = datetime.timedelta(days=3650)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclasses.dataclass(frozen=True)
class Client:
    """A client identity: file stem, common name and groups (organizations)."""

    stem: str
    common_name: str
    groups: tuple[str, ...] = ()


CLIENTS = (
    Client("admin", "kfn-admin", ("system:masters",)),
    Client("controller-manager", "system:kube-controller-manager"),
    Client("scheduler", "system:kube-scheduler"),
    Client("kubelet", f"system:node:{config.NODE_NAME}", ("system:nodes",)),
    Client("kube-proxy", "system:kube-proxy"),
    # Bound to its own ClusterRole (``kuberouter.rbac_objects``): it reads, never writes.
    Client("kube-router", "kfn:kube-router"),
    Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
)


def _write_key(path: pathlib.Path, key: PrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _load_key(path: pathlib.Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key


def _name(common_name: str, groups: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _ensure_ca(pki: pathlib.Path) -> tuple[x509.Certificate, PrivateKey]:
    cert_path, key_path = pki / "ca.crt", pki / "ca.key"
    if cert_path.exists() and key_path.exists():
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), _load_key(key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _self_signed(_name("kfn-local-ca"), key, ca=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _self_signed(name: x509.Name, key: PrivateKey, *, ca: bool) -> x509.CertificateBuilder:
    """A builder for a certificate that names itself as its issuer, valid from five minutes
    ago (clock skew) for :data:`VALIDITY`."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )


def _issue(
    pki: pathlib.Path,
    stem: str,
    ca: tuple[x509.Certificate, PrivateKey],
    subject: x509.Name,
    *,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
    client: bool = False,
) -> None:
    cert_path, key_path = pki / f"{stem}.crt", pki / f"{stem}.key"
    if cert_path.exists() and key_path.exists():
        return
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server_names or server_ips:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure(pki: pathlib.Path) -> None:
    """Makes every certificate and key the cluster needs (idempotent)."""
    pki.mkdir(parents=True, exist_ok=True)
    ca = _ensure_ca(pki)
    _issue(
        pki,
        "apiserver",
        ca,
        _name("kube-apiserver"),
        server_names=(
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
            "localhost",
            config.NODE_NAME,
        ),
        server_ips=(config.NODE_IP, config.KUBERNETES_SERVICE_IP, "127.0.0.1"),
    )
    _issue(
        pki,
        "kubelet-serving",
        ca,
        _name(f"system:node:{config.NODE_NAME}", ("system:nodes",)),
        server_names=(config.NODE_NAME, "localhost"),
        server_ips=(config.NODE_IP, "127.0.0.1"),
    )
    for c in CLIENTS:
        _issue(pki, c.stem, ca, _name(c.common_name, c.groups), client=True)
    _issue(
        pki,
        "registry",
        ca,
        _name("kfn-registry"),
        server_names=("kfn-registry", "localhost"),
        server_ips=(config.NODE_IP, "127.0.0.1"),
    )
    _ensure_registry_secrets(pki)
    sa_key = pki / "sa.key"
    if not sa_key.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(sa_key, key)
        (pki / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def _ensure_registry_secrets(pki: pathlib.Path) -> None:
    """The token service's signing key and certificate (the registry's ``rootcertbundle``),
    the robot key kfn's operator derives namespace credentials from, the admin password."""
    key_path, cert_path = pki / "registry-token.key", pki / "registry-token.crt"
    if not (key_path.exists() and cert_path.exists()):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _self_signed(_name("kfn-registry-token"), key, ca=False).sign(key, hashes.SHA256())
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for file_name in ("registry-robot.key", "registry-admin.password"):
        path = pki / file_name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32) + "\n")
            path.chmod(0o600)


def kubeconfig(pki: pathlib.Path, stem: str, server: str) -> str:
    """A kubeconfig for the client certificate ``stem``, with the data inlined."""

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kfn",
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": stem,
                "user": {
                    "client-certificate-data": b64(f"{stem}.crt"),
                    "client-key-data": b64(f"{stem}.key"),
                },
            }
        ],
        "contexts": [{"name": "kfn", "context": {"cluster": "kfn", "user": stem}}],
        "current-context": "kfn",
    }
    return yaml.safe_dump(doc, sort_keys=False)
