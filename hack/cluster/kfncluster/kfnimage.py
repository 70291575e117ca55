"""Building kfn's own image from ``operator/Dockerfile`` and pushing it to the local registry.

The Python dependencies are installed on the host (``pip install --target``
with ``--only-binary``, for CPython 3.11 on manylinux), so the build itself
needs no network; buildah then builds the Dockerfile unprivileged (chroot
isolation, vfs storage in the cache) on the cluster's Debian base image and
pushes it through the registry's API (TLS, as the admin). The result is pinned by digest.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import sys
import tomllib

from kfncluster import config, host
from kfncluster import registry as local_registry

REPO = pathlib.Path(__file__).resolve().parents[3]
REPOSITORY = f"{config.REGISTRY}/kfn/kfn"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache")


#: Installed into the image besides kfn's own dependencies: the in-cluster builder
#: (``python3 -m kfn.builder``, run by build Jobs on this image) installs a function's
#: Python dependencies with pip, and the Debian base has no pip of its own.
BUILD_TOOLS = ("pip==26.3",)


def dependencies(tree: pathlib.Path = REPO) -> list[str]:
    with (tree / "pyproject.toml").open("rb") as f:
        return [*tomllib.load(f)["project"]["dependencies"], *BUILD_TOOLS]


def _site_packages(paths: config.Paths, log: pathlib.Path, tree: pathlib.Path) -> pathlib.Path:
    """The dependencies installed for the image, cached by the requirement list."""
    deps = dependencies(tree)
    key = hashlib.sha256("\n".join([*deps, "manylinux_2_28"]).encode()).hexdigest()[:12]
    target = paths.cache / "image-deps" / key
    if (target / ".complete").exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
        "--target", str(target),
        # glibc 2.28 or newer: the Debian bookworm base has 2.36, and
        # confluent-kafka publishes only manylinux_2_28 wheels.
        "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
        "--platform", "manylinux2014_x86_64",
        "--python-version", "3.11", "--implementation", "cp",
        *deps,
    ]  # fmt: skip
    host.run_logged(cmd, log, "installing kfn's dependencies for the image")
    (target / ".complete").touch()
    return target


def build(paths: config.Paths, tag: str = "dev", tree: pathlib.Path = REPO) -> str:
    """Builds and pushes the kfn image of ``tree`` (a checkout, by default this one);
    returns ``repository@digest``."""
    log = paths.logs / "kfn-image.log"
    site = _site_packages(paths, log, tree)
    context = REPO / "build" / "kfn-image"
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    shutil.copytree(site, context / "site-packages", ignore=_IGNORED, symlinks=True)
    shutil.copytree(tree / "operator" / "kfn", context / "kfn", ignore=_IGNORED)
    storage = [
        "--root", str(paths.cache / "buildah" / "root"),
        "--runroot", str(paths.run / "buildah"),
        "--storage-driver", "vfs",
    ]  # fmt: skip
    image = f"{REPOSITORY}:{tag}"
    # The registry serves TLS from the cluster CA and wants a token: buildah trusts the CA
    # from a directory of its own and authenticates as the admin, from an auth file (never
    # on the command line, which logs and `ps` show).
    certs = REPO / "build" / "kfn-image-auth"
    shutil.rmtree(certs, ignore_errors=True)
    certs.mkdir(mode=0o700, parents=True)
    shutil.copy(local_registry.ca_file(paths), certs / "ca.crt")
    authfile = certs / "auth.json"
    authfile.write_text(local_registry.docker_config(paths))
    authfile.chmod(0o600)
    auth = ["--cert-dir", str(certs), "--authfile", str(authfile)]
    host.run_logged(
        [
            "buildah", *storage, "bud", "--isolation", "chroot", *auth,
            "--layers", "--build-arg", f"BASE_IMAGE={config.BASE_PYTHON_IMAGE}",
            "-f", str(tree / "operator" / "Dockerfile"), "-t", image, str(context),
        ],
        log,
        "buildah bud of operator/Dockerfile",
    )  # fmt: skip
    digest_file = context / "digest"
    host.run_logged(
        [
            "buildah",
            *storage,
            "push",
            *auth,
            "--digestfile",
            str(digest_file),
            image,
        ],
        log,
        "buildah push of the kfn image",
    )
    return f"{REPOSITORY}@{digest_file.read_text().strip()}"
