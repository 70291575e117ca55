"""kfn.oci: layers are deterministic, and images round-trip through a real registry."""

from __future__ import annotations

import json
import pathlib
import tarfile

import pytest

from kfn import oci


def _tree(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def test_the_same_files_give_the_same_layer_digest_whatever_their_times(
    tmp_path: pathlib.Path,
) -> None:
    a = _tree(tmp_path / "a", {"main.py": "print(1)\n", "lib/util.py": "X = 1\n"})
    b = _tree(tmp_path / "b", {"lib/util.py": "X = 1\n", "main.py": "print(1)\n"})
    (b / "main.py").touch()
    store = oci.BlobStore(tmp_path / "store")
    assert (
        store.layer_from_tree([("app", a)]).blob.digest
        == store.layer_from_tree([("app", b)]).blob.digest
    )


def test_a_changed_file_changes_the_layer_digest(tmp_path: pathlib.Path) -> None:
    store = oci.BlobStore(tmp_path / "store")
    one = store.layer_from_tree([("app", _tree(tmp_path / "a", {"main.py": "1"}))])
    two = store.layer_from_tree([("app", _tree(tmp_path / "b", {"main.py": "2"}))])
    assert one.blob.digest != two.blob.digest


def test_a_layer_holds_the_files_under_their_image_paths_owned_by_root(
    tmp_path: pathlib.Path,
) -> None:
    store = oci.BlobStore(tmp_path / "store")
    layer = store.layer_from_tree([("var/task", _tree(tmp_path / "src", {"h.py": "x"}))])
    with tarfile.open(layer.blob.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"var/task", "var/task/h.py"}
    assert members["var/task/h.py"].uid == 0
    assert members["var/task/h.py"].mtime == 0


def test_a_compressed_layer_keeps_the_uncompressed_digest_as_its_diff_id(
    tmp_path: pathlib.Path,
) -> None:
    store = oci.BlobStore(tmp_path / "store")
    src = _tree(tmp_path / "src", {"a": "a" * 10_000})
    plain = store.layer_from_tree([("x", src)])
    packed = store.layer_from_tree([("x", src)], compress=True)
    assert packed.diff_id == plain.diff_id == plain.blob.digest
    assert packed.blob.media_type == oci.MEDIA_LAYER_GZIP
    assert packed.blob.size < plain.blob.size


def test_the_same_files_compress_to_the_same_blob_in_any_store(tmp_path: pathlib.Path) -> None:
    src = _tree(tmp_path / "src", {"a": "a" * 10_000, "b": "b"})
    first = oci.BlobStore(tmp_path / "one").layer_from_tree([("x", src)], compress=True)
    second = oci.BlobStore(tmp_path / "two").layer_from_tree([("x", src)], compress=True)
    assert first.blob.digest == second.blob.digest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.244.0.1:5000/kfn/base:bookworm", ("10.244.0.1:5000", "kfn/base", "bookworm", None)),
        ("localhost/a/b/c@sha256:" + "0" * 64, ("localhost", "a/b/c", None, "sha256:" + "0" * 64)),
        ("registry.example:443/x", ("registry.example:443", "x", None, None)),
    ],
)
def test_references_parse_into_registry_repository_tag_and_digest(
    text: str, expected: tuple[str, str, str | None, str | None]
) -> None:
    ref = oci.Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert str(ref) == text


def test_a_reference_without_a_registry_host_is_refused() -> None:
    with pytest.raises(ValueError, match="must name its registry host"):
        oci.Reference.parse("library/python:3.11")


def test_an_image_pushed_to_a_registry_comes_back_with_the_same_digest(
    tmp_path: pathlib.Path, registry: str
) -> None:
    store = oci.BlobStore(tmp_path / "store")
    layer = store.layer_from_tree([("app", _tree(tmp_path / "src", {"main.py": "print(1)"}))])
    image = store.image([layer], oci.ImageConfig(cmd=["python3", "main.py"], env={"A": "1"}))
    ref = oci.Reference(registry, "test/app", "v1")
    digest = oci.Registry(registry, plain_http=True).push_image(image, ref)
    assert digest == image.digest
    found = oci.Registry(registry, plain_http=True).get_manifest(ref)
    assert found is not None
    assert found[0] == image.digest
    assert [d["digest"] for d in found[1]["layers"]] == [layer.blob.digest]


def test_extending_an_image_mounts_the_base_layers_and_appends_new_ones(
    tmp_path: pathlib.Path, registry: str
) -> None:
    store = oci.BlobStore(tmp_path / "store")
    reg = oci.Registry(registry, plain_http=True)
    base_layer = store.layer_from_tree([("usr/lib/x", _tree(tmp_path / "base", {"lib": "base"}))])
    base = store.image([base_layer], oci.ImageConfig(env={"PATH": "/usr/bin"}, cmd=["sh"]))
    base_ref = oci.Reference(registry, "base/os", "1")
    reg.push_image(base, base_ref)

    code = store.layer_from_tree([("var/task", _tree(tmp_path / "code", {"h.py": "x"}))])
    target = oci.Reference(registry, "fn/hello", "abc")
    digest = oci.extend(
        reg,
        base_ref,
        store=store,
        layers=[code],
        overrides=oci.ImageConfig(entrypoint=["python3"], env={"K": "v"}, workdir="/var/task"),
        target=target,
    )
    found = reg.get_manifest(target.with_digest(digest))
    assert found is not None
    manifest = found[1]
    assert [d["digest"] for d in manifest["layers"]] == [base_layer.blob.digest, code.blob.digest]
    config = json.loads(reg.get_blob("fn/hello", manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [base_layer.diff_id, code.diff_id]
    assert config["config"]["Env"] == ["PATH=/usr/bin", "K=v"]
    assert config["config"]["Entrypoint"] == ["python3"]
    assert "Cmd" not in config["config"]
    assert reg.has_blob("fn/hello", base_layer.blob.digest)


def test_a_saved_layout_loads_back_as_the_same_image(tmp_path: pathlib.Path) -> None:
    store = oci.BlobStore(tmp_path / "layout")
    layer = store.layer_from_tree([("a", _tree(tmp_path / "src", {"f": "1"}))])
    image = store.image([layer], oci.ImageConfig(cmd=["true"]))
    store.save_index(image, "name")
    loaded = oci.BlobStore(tmp_path / "layout").load_index()
    assert loaded is not None
    assert loaded.digest == image.digest
    assert loaded.layers == image.layers


def test_extending_a_base_that_is_an_index_builds_on_its_linux_amd64_image(
    tmp_path: pathlib.Path, registry: str
) -> None:
    store = oci.BlobStore(tmp_path / "store")
    reg = oci.Registry(registry, plain_http=True)
    images = {}
    for arch in ("arm64", "amd64"):
        layer = store.layer_from_tree([("arch", _tree(tmp_path / arch, {"name": arch}))])
        images[arch] = store.image([layer], oci.ImageConfig(cmd=[arch]))
        reg.push_image(images[arch], oci.Reference(registry, "base/multi", arch))
    base = oci.Reference(registry, "base/multi", "latest")
    reg.push_index(
        base,
        [
            (
                image.digest,
                len(image.manifest),
                oci.MEDIA_MANIFEST,
                {"architecture": a, "os": "linux"},
            )
            for a, image in images.items()
        ],
    )
    code = store.layer_from_tree([("var/task", _tree(tmp_path / "code", {"h.py": "x"}))])
    target = oci.Reference(registry, "fn/multi", "1")
    oci.extend(reg, base, store=store, layers=[code], overrides=oci.ImageConfig(), target=target)
    found = reg.get_manifest(target)
    assert found is not None
    assert found[1]["layers"][0] == images["amd64"].layers[0].blob.descriptor()


def test_a_manifest_is_stored_under_the_media_type_it_declares(
    tmp_path: pathlib.Path, registry: str
) -> None:
    store = oci.BlobStore(tmp_path / "store")
    reg = oci.Registry(registry, plain_http=True)
    layer = store.layer_from_tree([("a", _tree(tmp_path / "src", {"f": "1"}))])
    image = store.image([layer], oci.ImageConfig())
    ref = oci.Reference(registry, "test/indexed", "1")
    reg.push_image(image, ref)
    index = oci.index_manifest(
        [(image.digest, len(image.manifest), oci.MEDIA_MANIFEST, dict(oci.PLATFORM))]
    )
    digest = reg.put_manifest(oci.Reference(registry, "test/indexed", "index"), index)
    found = reg.get_manifest(oci.Reference(registry, "test/indexed", "index"))
    assert found is not None
    assert found[0] == digest
    assert found[1]["mediaType"] == oci.MEDIA_INDEX
    assert found[1]["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
