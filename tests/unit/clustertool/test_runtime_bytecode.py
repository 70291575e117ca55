"""The Python runtime images carry the runtime's bytecode, compiled by the base's own python3.

Function pods run with ``PYTHONDONTWRITEBYTECODE`` on a read-only root, so the ``.pyc`` must be
in the image, for the image's Python version, and valid whatever times the layer tools give the
files (unchecked-hash). These tests compile in the cached bases' root filesystems (a chroot, as
root) and skip a base that is not cached yet; the content key tests need neither.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Built:
    """A Python runtime, its base's root filesystem and the two layers made for it."""

    runtime: str
    rootfs: pathlib.Path
    members: dict[str, bytes]
    """The runtime layer: file path in the image → content."""
    stdlib: oci.Layer
    """The base's standard library's bytecode."""


@pytest.fixture(scope="module", params=PYTHONS)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    runtime = str(request.param)
    rootfs = _rootfs(runtime)
    made = runtimeimages.IMAGES[runtime]
    base = images.find_cached(config.Paths(), made.cache_name)
    assert base is not None
    cache = tmp_path_factory.mktemp("cache")
    paths = config.Paths(state=cache / "state", run=cache / "run", cache=cache)
    stdlib = runtimeimages.stdlib_bytecode(paths, made, base, rootfs)
    return Built(runtime, rootfs, _layer_members(rootfs), stdlib)


def test_the_layer_has_the_bases_bytecode_for_every_runtime_module(built: Built) -> None:
    pyc = {name for name in built.members if name.endswith(".pyc")}
    expected = {f"{IN_IMAGE}/__pycache__/{m}.{_tag(built.runtime)}.pyc" for m in MODULES}
    assert pyc == expected
    assert {f"{IN_IMAGE}/{m}.py" for m in MODULES} <= set(built.members)


def test_the_bytecode_is_unchecked_hash_so_file_times_do_not_matter(built: Built) -> None:
    for module in MODULES:
        data = built.members[f"{IN_IMAGE}/__pycache__/{module}.{_tag(built.runtime)}.pyc"]
        # PEP 552: magic, flags (bit 0 hash-based, bit 1 check_source), then the source hash.
        assert int.from_bytes(data[4:8], "little") == 0b01, module
        if built.runtime == f"python{sys.version_info.major}.{sys.version_info.minor}":
            assert data[:4] == importlib.util.MAGIC_NUMBER
            source = built.members[f"{IN_IMAGE}/{module}.py"]
            assert data[8:16] == importlib.util.source_hash(source), module


def test_the_standard_library_layer_is_the_bases_bytecode_alone(built: Built) -> None:
    version = built.runtime.removeprefix("python")
    with tarfile.open(built.stdlib.blob.path) as tar:
        members = tar.getmembers()
        pyc = [m for m in members if m.isfile()]
        assert {m.name for m in members if m.isdir()} == {m.name.rsplit("/", 1)[0] for m in pyc}, (
            "only the __pycache__ directories"
        )
        assert all(m.name.endswith(f".{_tag(built.runtime)}.pyc") for m in pyc)
        assert all(f"lib/python{version}/" in m.name and "/__pycache__/" in m.name for m in pyc)
        names = {m.name.split(f"lib/python{version}/", 1)[1] for m in pyc}
        assert f"asyncio/__pycache__/base_events.{_tag(built.runtime)}.pyc" in names
        for m in pyc[:50]:
            f = tar.extractfile(m)
            assert f is not None
            assert int.from_bytes(f.read(8)[4:8], "little") == 0b01, m.name


def test_the_runtime_and_the_standard_library_load_from_bytecode_in_the_image(
    built: Built, tmp_path: pathlib.Path
) -> None:
    """The image's root as a pod has it (the base with both layers over it, read-only), its
    python3 as uid 65532 with PYTHONDONTWRITEBYTECODE: every module the runtime imports comes
    from a ``.pyc`` (``-v`` says where each code object comes from); none is compiled."""
    runtime_dir, stdlib_dir, merged = tmp_path / "runtime", tmp_path / "stdlib", tmp_path / "root"
    for d in (runtime_dir, stdlib_dir, merged):
        d.mkdir()
    for name, data in built.members.items():
        (runtime_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (runtime_dir / name).write_bytes(data)
    for d in [runtime_dir, *(p for p in runtime_dir.rglob("*") if p.is_dir())]:
        d.chmod(0o755)
    with tarfile.open(built.stdlib.blob.path) as tar:
        tar.extractall(stdlib_dir, filter="data")
    imports = ", ".join(f"kfn_runtime.{m}" for m in MODULES if m != "__main__")
    script = (
        'set -e; mount -t overlay overlay -o "lowerdir=$1:$2:$3" "$4"; shift 4; exec chroot "$@"'
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(runtime_dir), str(stdlib_dir), str(built.rootfs), str(merged),
         "--userspec=65532:65532", str(merged), "/usr/bin/env", "-i",
         "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1",
         "PYTHONPATH=/opt/kfn/runtime", "python3", "-v", "-c", f"import {imports}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = [line for line in done.stderr.splitlines() if line.startswith("# code object from")]
    runtime_code = {line for line in loaded if "/kfn_runtime/" in line}
    assert runtime_code == {
        f"# code object from '/{IN_IMAGE}/__pycache__/{m}.{_tag(built.runtime)}.pyc'"
        for m in MODULES
        if m != "__main__"
    }
    compiled = [line for line in loaded if not line.endswith(".pyc'")]
    assert compiled == [], "compiled from source"
    assert any("/asyncio/__pycache__/" in line for line in loaded)


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
