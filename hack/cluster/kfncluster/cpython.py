"""CPython 3.12 for the python3.12 runtime's base, built from source once and cached.

No Debian release this machine installs from has Python 3.12 (bookworm has 3.11, trixie
3.13), and python.org is out of reach. CPython's source is on the Go module proxy, which
serves any GitHub repository's tags as module zips: ``go mod download`` fetches
``github.com/python/cpython@v3.12.14+incompatible`` (checked against the checksum database,
and here against the sha256 pinned below). It is built in a Debian bookworm chroot with the
build dependencies from apt (``./configure --prefix=/usr/local``, ``make altinstall`` into a
staging directory), the way the official ``python:3.12`` images build it, without the test
suite and without pip (builds install dependencies with the builder's pip). The result,
``/usr/local`` alone, is cached and becomes one layer on a bookworm minbase holding the
shared libraries it links against (:func:`kfncluster.images.base_python312`).

It costs 469 s once per machine (measured on a fresh one, 2 busy cores: the two debootstraps,
apt, and about 5 minutes of compiling); a real cluster names an official ``python:3.12-slim``
based image in the chart's ``builder.runtimeImages.python312`` instead. Not built, as in
Debian's own minimal images: curses, dbm, gdbm, readline and tkinter.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import zipfile
from collections.abc import Callable

from kfncluster import config, host

VERSION = "3.12.14"
MODULE = f"github.com/python/cpython@v{VERSION}+incompatible"
ZIP_SHA256 = "1eb4c63c935290583758ea4a4d46e07bba6f192a8569f34854149b5c9da68b9d"
#: What compiling CPython with the modules Lambda's python3.12 has needs.
BUILD_PACKAGES = (
    "build-essential", "pkg-config", "libssl-dev", "zlib1g-dev", "libffi-dev", "libbz2-dev",
    "liblzma-dev", "libsqlite3-dev", "uuid-dev", "libexpat1-dev",
)  # fmt: skip
#: The shared libraries that build links against, for the image that runs it.
RUNTIME_PACKAGES = (
    "ca-certificates", "libssl3", "zlib1g", "libffi8", "libbz2-1.0", "liblzma5",
    "libsqlite3-0", "libuuid1", "libexpat1",
)  # fmt: skip
CONFIGURE = "./configure --prefix=/usr/local --with-ensurepip=no --disable-test-modules"


def source_zip(paths: config.Paths, log: pathlib.Path) -> pathlib.Path:
    """The source zip from the Go module proxy (``go mod download``), checked."""
    gopath = paths.cache / "gopath"
    env = {**os.environ, "GOPATH": str(gopath), "GOFLAGS": "-mod=mod"}
    result = host.run(["go", "mod", "download", "-json", MODULE], env=env, check=False)
    try:
        found = json.loads(result.stdout)
    except ValueError:
        found = {}
    if result.returncode != 0 or "Zip" not in found:
        detail = found.get("Error") or result.stderr.strip() or "no answer"
        raise RuntimeError(f"go mod download {MODULE}: {detail}")
    path = pathlib.Path(found["Zip"])
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if sha != ZIP_SHA256:
        raise RuntimeError(f"{path.name}: sha256 {sha}, expected {ZIP_SHA256}; refusing it")
    with log.open("a") as out:
        out.write(f"{MODULE}: {path} sha256 {sha}\n")
    return path


def build(
    paths: config.Paths,
    log: pathlib.Path,
    apt_install: Callable[[pathlib.Path, tuple[str, ...], pathlib.Path], None],
) -> pathlib.Path:
    """``/usr/local`` of the built CPython, from the cache or built into it; ``apt_install``
    installs packages in a chroot (:func:`kfncluster.images.apt_install`)."""
    key = hashlib.sha256(
        "\0".join((ZIP_SHA256, CONFIGURE, *BUILD_PACKAGES, config.DEBIAN_SUITE)).encode()
    ).hexdigest()[:16]
    done = paths.cache / f"cpython-{VERSION}-{key}"
    if (done / "usr-local" / "bin" / "python3.12").exists():
        return done / "usr-local"
    work = paths.cache / f"cpython-{VERSION}-build"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    host.run_logged(
        ["debootstrap", "--variant=minbase", config.DEBIAN_SUITE, str(rootfs),
         config.DEBIAN_MIRROR],
        log, "debootstrap (CPython build root)",
    )  # fmt: skip
    apt_install(rootfs, BUILD_PACKAGES, log)
    with zipfile.ZipFile(source_zip(paths, log)) as archive:
        prefix = MODULE + "/"
        for member in archive.infolist():
            if member.is_dir() or not member.filename.startswith(prefix):
                continue
            target = rootfs / "src" / member.filename.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            # Module zips keep no modes; configure and the build's scripts must run.
            target.chmod(0o755)
    jobs = os.cpu_count() or 2
    script = f"cd /src && {CONFIGURE} && make -j{jobs} && make altinstall DESTDIR=/out"
    host.run_logged(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && '
         'exec chroot "$1" sh -c "$2"', "sh", str(rootfs), script],
        log, f"build CPython {VERSION}",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    staged = done.with_name(done.name + ".partial")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    shutil.move(str(rootfs / "out" / "usr" / "local"), str(staged / "usr-local"))
    (staged / "usr-local" / "bin" / "python3").symlink_to("python3.12")
    for stale in paths.cache.glob(f"cpython-{VERSION}-*"):
        if stale not in (work, staged):
            shutil.rmtree(stale, ignore_errors=True)
    staged.rename(done)
    shutil.rmtree(work, ignore_errors=True)
    return done / "usr-local"
