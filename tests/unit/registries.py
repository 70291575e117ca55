"""Registries that want a login, on loopback: TLS from a CA made here, and token or Basic auth.

``docker-registry`` (Debian's CNCF distribution 2.8) runs with ``auth: token`` pointing at the
real token service (``python -m kfn.registry_auth``) on another loopback port, or with
``auth: htpasswd``. Certificates are made with ``cryptography``: a CA, a server certificate
for 127.0.0.1, and the token signing key's certificate for the registry's ``rootcertbundle``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.client
import ipaddress
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kfn import oci
from kfn.registry_auth import jwt, policy

REPO = pathlib.Path(__file__).resolve().parents[2]
SERVICE = "kfn-test-registry"
ISSUER = "kfn-test-token-service"
ADMIN_PASSWORD = "admin-secret-for-tests"
PUBLIC_PREFIXES = ("kfn/", "tests/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem_key(key: jwt.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclasses.dataclass(frozen=True)
class Pki:
    """A CA (``ca_file``) and a server certificate for 127.0.0.1 it signed."""

    ca_file: pathlib.Path
    cert_file: pathlib.Path
    key_file: pathlib.Path


def make_pki(directory: pathlib.Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kfn test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(_pem_key(key))
    pki.key_file.chmod(0o600)
    return pki


@dataclasses.dataclass(frozen=True)
class TokenRegistry:
    """A TLS ``docker-registry`` with token auth, and the token service it trusts."""

    host: str
    ca_file: pathlib.Path
    token_url: str
    robot_key: bytes
    token_log: pathlib.Path

    @property
    def admin(self) -> oci.Credentials:
        return oci.Credentials(policy.ADMIN_USERNAME, ADMIN_PASSWORD, "the test admin")

    def robot(
        self, namespace: str, *, expires: datetime.datetime | None = None, key: bytes = b""
    ) -> oci.Credentials:
        """The robot of ``namespace``, as the operator would put it in the namespace's Secret
        (``key`` overrides the service's robot key, to make credentials it never issued)."""
        expires = expires or datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        issued = policy.issue_robot(key or self.robot_key, namespace, expires)
        return oci.Credentials(issued.username, issued.password, f"Secret {namespace}/kfn-registry")

    def client(self, credentials: oci.Credentials | None = None) -> oci.Registry:
        return oci.Registry(self.host, credentials=credentials, ca_file=str(self.ca_file))


def _wait_https(port: int, ca_file: pathlib.Path, path: str, proc: subprocess.Popen[bytes]) -> None:
    """Waits until ``path`` answers anything over TLS (``/v2/`` answers 401 to strangers)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            conn.close()


def _docker_registry() -> str:
    binary = shutil.which("docker-registry")
    if binary is None:
        import pytest  # noqa: PLC0415

        pytest.skip("docker-registry is installed by `make cluster`")
    return binary


@contextlib.contextmanager
def _process(
    cmd: list[str], log: pathlib.Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _registry_config(
    directory: pathlib.Path, port: int, pki: Pki, auth: Mapping[str, object]
) -> pathlib.Path:
    config = directory / "registry.yaml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "info", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
                "http": {
                    "addr": f"127.0.0.1:{port}",
                    "tls": {"certificate": str(pki.cert_file), "key": str(pki.key_file)},
                },
                "auth": dict(auth),
            }
        )
    )
    return config


@contextlib.contextmanager
def token_registry(directory: pathlib.Path) -> Iterator[TokenRegistry]:
    """Starts the token service and a registry trusting it; both stop on exit."""
    binary = _docker_registry()
    pki = make_pki(directory / "pki")
    now = datetime.datetime.now(datetime.UTC)
    signing = jwt.SigningKey(ec.generate_private_key(ec.SECP256R1()))
    signing_file = directory / "signing-key.pem"
    signing_file.write_bytes(_pem_key(signing.private_key))
    bundle = directory / "token-roots.pem"
    bundle.write_bytes(
        jwt.trust_certificate(
            signing, common_name=ISSUER, now=now, valid_for=datetime.timedelta(days=1)
        )
    )
    robot_key = os.urandom(32).hex().encode()
    (directory / "robot-key").write_bytes(robot_key)
    (directory / "admin-password").write_text(ADMIN_PASSWORD + "\n")
    token_port, registry_port = free_port(), free_port()
    token_url = f"https://127.0.0.1:{token_port}/token"
    service_cmd = [
        sys.executable, "-m", "kfn.registry_auth",
        "--address", "127.0.0.1", "--port", str(token_port),
        "--tls-cert", str(pki.cert_file), "--tls-key", str(pki.key_file),
        "--signing-key", str(signing_file),
        "--issuer", ISSUER, "--service", SERVICE,
        "--robot-key-file", str(directory / "robot-key"),
        "--admin-password-file", str(directory / "admin-password"),
        "--token-ttl-seconds", "300",
    ]  # fmt: skip
    for prefix in PUBLIC_PREFIXES:
        service_cmd += ["--public-prefix", prefix]
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    config = _registry_config(
        directory,
        registry_port,
        pki,
        {
            "token": {
                "realm": token_url,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(bundle),
            }
        },
    )
    token_log = directory / "token-service.log"
    with (
        _process(service_cmd, token_log, env) as service,
        _process([binary, "serve", str(config)], directory / "registry.log") as registry,
    ):
        _wait_https(token_port, pki.ca_file, "/healthz", service)
        _wait_https(registry_port, pki.ca_file, "/v2/", registry)
        yield TokenRegistry(
            f"127.0.0.1:{registry_port}", pki.ca_file, token_url, robot_key, token_log
        )


@dataclasses.dataclass(frozen=True)
class BasicRegistry:
    """A TLS ``docker-registry`` with ``auth: htpasswd`` and one user."""

    host: str
    ca_file: pathlib.Path
    username: str
    password: str


def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash for htpasswd (the only kind docker-registry reads): from the ``bcrypt``
    module if installed, else from the C library's crypt(3) where it does bcrypt (libxcrypt),
    else None."""
    try:
        import bcrypt  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        pass
    else:
        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # noqa: PLC0415
        except ImportError:
            return None
        # bcrypt ($2b$), the one hash htpasswd in docker-registry takes; cost 16 = 2^4 for speed.
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # noqa: S324
    return hashed if hashed and hashed.startswith("$2") else None


@contextlib.contextmanager
def basic_registry(
    directory: pathlib.Path, username: str, password: str
) -> Iterator[BasicRegistry]:
    """Starts the registry with ``username`` and ``password`` in its htpasswd file (skipped
    where no bcrypt hash can be made)."""
    binary = _docker_registry()
    hashed = bcrypt_hash(password)
    if hashed is None:
        import pytest  # noqa: PLC0415

        pytest.skip("neither the bcrypt module nor a bcrypt-capable crypt(3) is available")
    pki = make_pki(directory / "pki")
    htpasswd = directory / "htpasswd"
    htpasswd.write_text(f"{username}:{hashed}\n")
    port = free_port()
    config = _registry_config(
        directory, port, pki, {"htpasswd": {"realm": "kfn-test", "path": str(htpasswd)}}
    )
    with _process([binary, "serve", str(config)], directory / "registry.log") as registry:
        _wait_https(port, pki.ca_file, "/v2/", registry)
        yield BasicRegistry(f"127.0.0.1:{port}", pki.ca_file, username, password)
