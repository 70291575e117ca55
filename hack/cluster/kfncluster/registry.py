"""The local cluster's image registry: TLS, token authentication and who may do what.

Debian's ``docker-registry`` (CNCF distribution 2.8) serves on the node address over TLS with
a certificate from the cluster CA, which containerd trusts through a ``hosts.toml``. It checks
every request against a bearer token (the Docker registry v2 token specification, which Harbor,
GHCR, GitLab and Docker Hub use) signed by kfn's token service, ``python -m
kfn.registry_auth``, a host process beside it. The token service grants:

* anonymous pull of the platform's public repositories (``kfn/``, ``tests/``, ``bench/``,
  ``charts/``): system images, runtime images, test images, the released chart;
* to the robot credential of namespace N (issued by kfn's operator from the robot key, as
  Harbor's robot accounts are per project), push and pull of ``fn/N/*`` and pull of the public
  repositories, and nothing else;
* to the admin (this tool, ``make release``), everything.

The keys and the admin password are made once with the cluster's PKI (:mod:`kfncluster.pki`).
"""

from __future__ import annotations

import base64
import json
import pathlib
import sys

import yaml

from kfn import oci
from kfn.registry_auth import policy
from kfncluster import config

REPO = pathlib.Path(__file__).resolve().parents[3]

AUTH_PORT = 5001
REALM = f"https://{config.NODE_IP}:{AUTH_PORT}/token"
SERVICE = "kfn-registry"
ISSUER = "kfn-registry-auth"
ADMIN = policy.ADMIN_USERNAME
PUBLIC_PREFIXES = ("kfn/", "tests/", "bench/", "charts/")


def ca_file(paths: config.Paths) -> pathlib.Path:
    return paths.pki / "ca.crt"


def admin_password(paths: config.Paths) -> str:
    return (paths.pki / "registry-admin.password").read_text().strip()


def robot_key_file(paths: config.Paths) -> pathlib.Path:
    return paths.pki / "registry-robot.key"


def client(paths: config.Paths | None = None, timeout: float = 120.0) -> oci.Registry:
    """A client of the local registry with the admin credential."""
    paths = paths or config.Paths()
    return oci.Registry(
        config.REGISTRY,
        credentials=oci.Credentials(ADMIN, admin_password(paths), "the local cluster's admin"),
        ca_file=str(ca_file(paths)),
        timeout=timeout,
    )


def docker_config(paths: config.Paths) -> str:
    """A Docker ``config.json`` with the admin credential, for tools that read one."""
    token = base64.b64encode(f"{ADMIN}:{admin_password(paths)}".encode()).decode()
    return json.dumps({"auths": {config.REGISTRY: {"auth": token}}})


def registry_config(paths: config.Paths) -> str:
    pki = paths.pki
    return yaml.safe_dump(
        {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(paths.registry_data)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": config.REGISTRY,
                "tls": {
                    "certificate": str(pki / "registry.crt"),
                    "key": str(pki / "registry.key"),
                },
            },
            "auth": {
                "token": {
                    "realm": REALM,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(pki / "registry-token.crt"),
                }
            },
        }
    )


def hosts_toml(paths: config.Paths) -> str:
    """containerd's view of the registry: HTTPS, trusting the cluster CA.

    containerd 1.6 reads ``ca`` only inside a ``[host]`` table, so the registry is listed
    there as its own host; the ``server`` line is the fallback containerd tries after it.
    """
    ca = ca_file(paths)
    return (
        f'server = "https://{config.REGISTRY}"\n\n'
        f'[host."https://{config.REGISTRY}"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n'
        f'  ca = "{ca}"\n'
    )


def certs_dir(paths: config.Paths) -> pathlib.Path:
    """containerd's ``config_path``: one directory per registry host."""
    return paths.config / "certs.d"


def write_configs(paths: config.Paths) -> None:
    (paths.config / "registry.yaml").write_text(registry_config(paths))
    host_dir = certs_dir(paths) / config.REGISTRY
    host_dir.mkdir(parents=True, exist_ok=True)
    (host_dir / "hosts.toml").write_text(hosts_toml(paths))


def auth_argv(paths: config.Paths) -> list[str]:
    """The token service, run with this tool's Python from the checkout's ``operator/``."""
    pki = paths.pki
    argv = [
        sys.executable, "-m", "kfn.registry_auth",
        f"--address={config.NODE_IP}",
        f"--port={AUTH_PORT}",
        f"--tls-cert={pki / 'registry.crt'}",
        f"--tls-key={pki / 'registry.key'}",
        f"--signing-key={pki / 'registry-token.key'}",
        f"--issuer={ISSUER}",
        f"--service={SERVICE}",
        f"--robot-key-file={robot_key_file(paths)}",
        f"--admin-password-file={pki / 'registry-admin.password'}",
    ]  # fmt: skip
    for prefix in PUBLIC_PREFIXES:
        argv.append(f"--public-prefix={prefix}")
    return argv


def auth_env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO / "operator"), "PYTHONUNBUFFERED": "1"}
