"""The Debian packages the cluster runs on, installed when missing.

Bring-up installs them before its first use of any of them (``cluster._up`` runs this step
first; only the clean-up of a previous run may look for host tools earlier, and it treats a
missing one as nothing to clean).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

from kfncluster import host

#: The programs bring-up needs; :data:`kfncluster.host.PACKAGES` names their packages.
REQUIRED = (
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "/usr/lib/cni/bridge",
    "docker-registry",
    "debootstrap",
    "iptables",
    "ip6tables",
    "conntrack",
    # kube-router's policy rules match pod addresses through ipsets it manages with this tool.
    "ipset",
    "ip",
    "mount",
    "nsenter",
    "socat",
    # Builds the kfn image from operator/Dockerfile, unprivileged and with no daemon.
    "buildah",
    # The npm proxy (verdaccio) runs on the machine's Node.js and is installed with its npm.
    "node",
    "npm",
    # Kafka runs on the JVM; its classpath is resolved from Maven Central with Maven.
    "java",
    "mvn",
    "go",  # the Go toolchain comes with the machine
)


def missing(programs: Sequence[str] = REQUIRED) -> tuple[list[str], list[str]]:
    """(Debian packages to install, programs no package of ours provides) that are absent."""
    packages, others = set(), []
    for program in programs:
        if host.which(program):
            continue
        package = host.PACKAGES.get(program, "")
        if package:
            packages.add(package)
        else:
            others.append(program)
    return sorted(packages), others


def ensure(log: pathlib.Path, programs: Sequence[str] = REQUIRED) -> list[str]:
    """Installs the packages of the missing ``programs`` (bring-up's by default) with
    apt-get; returns what it installed."""
    packages, others = missing(programs)
    if others:
        raise RuntimeError(
            f"{', '.join(others)} must be installed first "
            "(they come with the machine, not from Debian's packages)"
        )
    if not packages:
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        host.run_logged(cmd, log, f"host packages: {' '.join(cmd[:2])}", env=env)
    still, _ = missing(programs)
    if still:
        raise RuntimeError(f"host packages still missing after apt-get: {still} — read {log}")
    return packages
