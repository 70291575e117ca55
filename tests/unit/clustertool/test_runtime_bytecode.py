"""The Python runtime images carry the runtime's bytecode, compiled by the base's own python3.

Function pods run with ``PYTHONDONTWRITEBYTECODE`` on a read-only root, so the ``.pyc`` must be
in the image, for the image's Python version, and valid whatever times the layer tools give the
files (unchecked-hash). These tests compile in the cached bases' root filesystems (a chroot, as
root) and skip a base that is not cached yet; the content key tests need neither.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest

from kfn import oci
from kfncluster import config, images, runtimeimages

SOURCE = runtimeimages.RUNTIMES / "python" / "kfn_runtime"
IN_IMAGE = "opt/kfn/runtime/kfn_runtime"
MODULES = sorted(p.stem for p in SOURCE.glob("*.py"))
PYTHONS = [r for r in runtimeimages.IMAGES if r.startswith("python")]


def _rootfs(runtime: str) -> pathlib.Path:
    """The unpacked root filesystem of ``runtime``'s cached base, or the test is skipped."""
    reason = runtimeimages.why_no_bytecode()
    if reason is not None:
        pytest.skip(reason)
    made = runtimeimages.IMAGES[runtime]
    paths = config.Paths()
    base = images.find_cached(paths, made.cache_name)
    if base is None:
        pytest.skip(f"{runtime}: its base {made.cache_name} is not cached yet (make up makes it)")
    return images.unpacked(paths, made.cache_name, base)


def _layer_members(rootfs: pathlib.Path, source: pathlib.Path = SOURCE) -> dict[str, bytes]:
    """The runtime layer as push_runtime makes it: file path in the image → content."""
    with tempfile.TemporaryDirectory() as tmp:
        store = oci.BlobStore(pathlib.Path(tmp))
        with runtimeimages.compiled(rootfs, [(f"/{IN_IMAGE}", source)]) as files:
            layer = store.layer_from_tree(files, bytecode=True)
        with tarfile.open(layer.blob.path) as tar:
            return {
                m.name: f.read()
                for m in tar.getmembers()
                if m.isfile() and (f := tar.extractfile(m)) is not None
            }


def _tag(runtime: str) -> str:
    return "cpython-" + runtime.removeprefix("python").replace(".", "")


@pytest.fixture(scope="module", params=PYTHONS)
def built(request: pytest.FixtureRequest) -> tuple[str, pathlib.Path, dict[str, bytes]]:
    """A Python runtime, its base's root filesystem and the runtime layer made for it."""
    runtime = str(request.param)
    rootfs = _rootfs(runtime)
    return runtime, rootfs, _layer_members(rootfs)


def test_the_layer_has_the_bases_bytecode_for_every_runtime_module(
    built: tuple[str, pathlib.Path, dict[str, bytes]],
) -> None:
    runtime, _, members = built
    pyc = {name for name in members if name.endswith(".pyc")}
    expected = {f"{IN_IMAGE}/__pycache__/{m}.{_tag(runtime)}.pyc" for m in MODULES}
    assert pyc == expected
    assert {f"{IN_IMAGE}/{m}.py" for m in MODULES} <= set(members)


def test_the_bytecode_is_unchecked_hash_so_file_times_do_not_matter(
    built: tuple[str, pathlib.Path, dict[str, bytes]],
) -> None:
    runtime, _, members = built
    for module in MODULES:
        data = members[f"{IN_IMAGE}/__pycache__/{module}.{_tag(runtime)}.pyc"]
        # PEP 552: magic, flags (bit 0 hash-based, bit 1 check_source), then the source hash.
        assert int.from_bytes(data[4:8], "little") == 0b01, module
        if runtime == f"python{sys.version_info.major}.{sys.version_info.minor}":
            assert data[:4] == importlib.util.MAGIC_NUMBER
            source = members[f"{IN_IMAGE}/{module}.py"]
            assert data[8:16] == importlib.util.source_hash(source), module


def test_the_runtime_imports_from_its_bytecode_in_the_base_as_the_function_user(
    built: tuple[str, pathlib.Path, dict[str, bytes]],
) -> None:
    """The base's python3, as uid 65532 with PYTHONDONTWRITEBYTECODE as in a pod, loads every
    module from its ``.pyc`` (``-v`` says where each code object comes from)."""
    runtime, rootfs, members = built
    top = pathlib.Path(tempfile.mkdtemp(prefix="kfn-bytecode-test-", dir=rootfs / "tmp"))
    try:
        top.chmod(0o755)
        for name, data in members.items():
            target = top / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for d in [top, *(p for p in top.rglob("*") if p.is_dir())]:
            d.chmod(0o755)
        inside = "/" + top.relative_to(rootfs).as_posix()
        files = set(top.rglob("*"))
        imports = ", ".join(f"kfn_runtime.{m}" for m in MODULES if m != "__main__")
        done = subprocess.run(
            ["chroot", "--userspec=65532:65532", str(rootfs), "/usr/bin/env", "-i",
             "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1",
             f"PYTHONPATH={inside}/opt/kfn/runtime", "python3", "-v", "-c", f"import {imports}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        runtime_code = [
            line
            for line in done.stderr.splitlines()
            if line.startswith("# code object from") and "/kfn_runtime/" in line
        ]
        expected = {
            f"# code object from '{inside}/{IN_IMAGE}/__pycache__/{m}.{_tag(runtime)}.pyc'"
            for m in MODULES
            if m != "__main__"
        }
        assert set(runtime_code) == expected
        assert set(top.rglob("*")) == files, "nothing was compiled again and written"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_bytecode_lying_in_the_working_tree_is_not_shipped(tmp_path: pathlib.Path) -> None:
    rootfs = _rootfs("python3.11")
    source = tmp_path / "kfn_runtime"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("__pycache__"))
    stale = source / "__pycache__" / "server.cpython-311.pyc"
    stale.parent.mkdir()
    stale.write_bytes(b"stale bytecode of another version of the source")
    (source / "leftover.pyc").write_bytes(b"a module whose source is gone")
    members = _layer_members(rootfs, source)
    assert members[f"{IN_IMAGE}/__pycache__/server.cpython-311.pyc"] != stale.read_bytes()
    assert not any(name.endswith("leftover.pyc") for name in members)


def test_the_same_source_compiles_to_the_same_layer() -> None:
    rootfs = _rootfs("python3.11")
    with tempfile.TemporaryDirectory() as tmp:
        store = oci.BlobStore(pathlib.Path(tmp))
        digests = set()
        for _ in range(2):
            with runtimeimages.compiled(rootfs, [(f"/{IN_IMAGE}", SOURCE)]) as files:
                digests.add(store.layer_from_tree(files, bytecode=True).diff_id)
    assert len(digests) == 1


def test_compiling_cleans_up_inside_the_base() -> None:
    rootfs = _rootfs("python3.11")
    before = set(os.listdir(rootfs / "tmp"))
    with runtimeimages.compiled(rootfs, [(f"/{IN_IMAGE}", SOURCE)]):
        assert set(os.listdir(rootfs / "tmp")) != before
    assert set(os.listdir(rootfs / "tmp")) == before


def test_a_source_that_does_not_compile_fails_the_build(tmp_path: pathlib.Path) -> None:
    rootfs = _rootfs("python3.11")
    source = tmp_path / "kfn_runtime"
    source.mkdir()
    (source / "broken.py").write_text("def broken(:\n")
    with (
        pytest.raises(RuntimeError, match=r"broken\.py"),
        runtimeimages.compiled(rootfs, [(f"/{IN_IMAGE}", source)]),
    ):
        pass


def test_a_layer_leaves_bytecode_out_unless_asked(tmp_path: pathlib.Path) -> None:
    tree = tmp_path / "pkg"
    (tree / "__pycache__").mkdir(parents=True)
    (tree / "mod.py").write_text("x = 1\n")
    (tree / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"code")
    store = oci.BlobStore(tmp_path / "store")

    def names(layer: oci.Layer) -> set[str]:
        with tarfile.open(fileobj=io.BytesIO(layer.blob.path.read_bytes())) as tar:
            return set(tar.getnames())

    assert names(store.layer_from_tree([("pkg", tree)])) == {"pkg", "pkg/mod.py"}
    assert names(store.layer_from_tree([("pkg", tree)], bytecode=True)) == {
        "pkg",
        "pkg/mod.py",
        "pkg/__pycache__",
        "pkg/__pycache__/mod.cpython-311.pyc",
    }


def test_an_image_with_bytecode_has_another_tag_than_one_without() -> None:
    without = runtimeimages._content_key(SOURCE.parent, "sha256:base")
    with_bytecode = runtimeimages._content_key(SOURCE.parent, "sha256:base", runtimeimages.BYTECODE)
    assert without != with_bytecode


def test_the_tag_changes_with_the_runtime_source_but_not_with_its_bytecode(
    tmp_path: pathlib.Path,
) -> None:
    source = tmp_path / "python"
    shutil.copytree(SOURCE.parent, source, ignore=shutil.ignore_patterns("__pycache__"))
    first = runtimeimages._content_key(source, "sha256:base", runtimeimages.BYTECODE)
    (source / "kfn_runtime" / "__pycache__").mkdir()
    (source / "kfn_runtime" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"x")
    assert runtimeimages._content_key(source, "sha256:base", runtimeimages.BYTECODE) == first
    server = source / "kfn_runtime" / "server.py"
    server.write_text(server.read_text() + "\n# changed\n")
    assert runtimeimages._content_key(source, "sha256:base", runtimeimages.BYTECODE) != first
