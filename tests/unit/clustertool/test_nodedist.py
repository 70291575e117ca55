"""Node.js 22 for the nodejs22 base: only the pinned tarballs are used, laid out as nodejs.org's."""

from __future__ import annotations

import io
import os
import pathlib
import tarfile

import pytest

from kfncluster import nodedist


def tarball(path: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path: pathlib.Path) -> None:
    path = tarball(tmp_path / nodedist.NODE.tarball, {"package/bin/node": b"not node"})
    with pytest.raises(nodedist.IntegrityError, match="refusing to use it"):
        nodedist.check(path, nodedist.NODE)
    pinned = nodedist.Package(nodedist.NODE.name, "0", nodedist.integrity_of(path))
    nodedist.check(path, pinned)


def test_the_pins_are_sha512_integrities_of_node_22_and_npm_10() -> None:
    for package, major in ((nodedist.NODE, "22"), (nodedist.NPM, "10")):
        assert package.version.split(".")[0] == major
        assert package.integrity.startswith("sha512-")
        assert len(package.integrity) == len("sha512-") + 88


def test_node_and_npm_are_laid_out_as_in_nodejs_orgs_tarball(tmp_path: pathlib.Path) -> None:
    node = tarball(
        tmp_path / "node.tgz",
        {"package/bin/node": b"\x7fELF", "package/include/node/v8.h": b"", "package/LICENSE": b""},
    )
    npm = tarball(
        tmp_path / "npm.tgz",
        {
            "package/bin/npm-cli.js": b"#!/usr/bin/env node\n",
            "package/bin/npx-cli.js": b"#!/usr/bin/env node\n",
            "package/node_modules/semver/index.js": b"",
        },
    )
    usr_local = tmp_path / "usr-local"
    nodedist.unpack({nodedist.NODE.name: node, nodedist.NPM.name: npm}, usr_local)
    assert (usr_local / "bin/node").read_bytes() == b"\x7fELF"
    assert os.access(usr_local / "bin/node", os.X_OK)
    assert not (usr_local / "include").exists()
    assert os.readlink(usr_local / "bin/npm") == "../lib/node_modules/npm/bin/npm-cli.js"
    assert os.readlink(usr_local / "bin/npx") == "../lib/node_modules/npm/bin/npx-cli.js"
    assert os.access(usr_local / "bin/npm", os.X_OK)
    assert (usr_local / "lib/node_modules/npm/node_modules/semver/index.js").exists()
