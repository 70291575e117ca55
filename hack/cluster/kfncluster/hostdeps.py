"""The Debian packages the cluster runs on, installed when missing."""

from __future__ import annotations

import os
import pathlib
import shutil

from kfncluster import procs

#: Command that must exist → the Debian package that provides it.
REQUIRED = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "docker-registry": "docker-registry",
    "debootstrap": "debootstrap",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "mount": "mount",
    "nsenter": "util-linux",
    "socat": "socat",
    # Builds the kfn image from operator/Dockerfile, unprivileged and with no daemon.
    "buildah": "buildah",
    # The npm proxy (verdaccio) runs on the machine's Node.js and is installed with its npm.
    "node": "nodejs",
    "npm": "npm",
    # Kafka runs on the JVM; its classpath is resolved from Maven Central with Maven.
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
    "go": "",  # the Go toolchain comes with the machine
}


def missing() -> list[str]:
    """Debian packages that are needed and not installed."""
    needed = []
    for command, package in REQUIRED.items():
        present = (
            pathlib.Path(command).exists() if command.startswith("/") else shutil.which(command)
        )
        if not present:
            if not package:
                raise RuntimeError(f"{command} is required and cannot be installed by this tool")
            needed.append(package)
    return sorted(set(needed))


def ensure(log: pathlib.Path) -> list[str]:
    """Installs the missing packages with apt-get; returns what it installed."""
    packages = missing()
    if not packages:
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        procs.run_logged(cmd, log, f"host packages: {' '.join(cmd[:2])}", env=env)
    still = missing()
    if still:
        raise RuntimeError(f"host packages still missing after apt-get: {still} — read {log}")
    return packages
