"""Layers of ``spec.layers`` in whole builds: real archives over loopback HTTP, real images in a
real registry, and the pushed image read back layer by layer as a container runtime would."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import pathlib
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator

import pytest

from kfn import oci, urls
from kfn.builder import build, layers
from kfn.builder.config import PYTHON, Bounds, BuildConfig, BuildError, DependencyLayer, LayerSource

LOOPBACK = urls.parse_networks(["127.0.0.0/8"])
REPOSITORY = "fn/team/hello"


class Served:
    """A loopback HTTP server of a directory that counts the requests for each path."""

    def __init__(self, root: pathlib.Path, base: str, hits: dict[str, int]) -> None:
        self.root, self.base, self.hits = root, base, hits

    def put(self, name: str, data: bytes) -> tuple[str, str]:
        """Serves ``data`` as ``name``; its URL and SHA-256."""
        (self.root / name).write_bytes(data)
        return f"{self.base}/{name}", hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(tmp_path: pathlib.Path) -> Iterator[Served]:
    www = tmp_path / "www"
    www.mkdir()
    hits: dict[str, int] = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(www), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            hits[self.path] = hits.get(self.path, 0) + 1
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Served(www, f"http://127.0.0.1:{server.server_address[1]}", hits)
    finally:
        server.shutdown()
        server.server_close()


def _zip(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return out.getvalue()


def _tar(entries: dict[str, str | None], *, gz: bool = True) -> bytes:
    """A tar of files (``None``: an empty file, as a whiteout is)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w") as tf:
        for name, content in entries.items():
            data = (content or "").encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _push_image(registry: str, tmp_path: pathlib.Path, name: str, *tars: bytes) -> str:
    """An image of the given layer tars in ``registry``; its reference by digest."""
    store = oci.BlobStore(tmp_path / f"image-{name}")
    image_layers = []
    for data in tars:
        plain = gzip.decompress(data)
        blob = store.put_bytes(data, oci.MEDIA_LAYER_GZIP)
        image_layers.append(oci.Layer(blob, "sha256:" + hashlib.sha256(plain).hexdigest()))
    image = store.image(image_layers, oci.ImageConfig())
    ref = oci.Reference(registry, f"tests/{name}", "1")
    digest = oci.Registry(registry, plain_http=True).push_image(image, ref)
    return f"{registry}/tests/{name}@{digest}"


def _config(
    tmp_path: pathlib.Path,
    registry: str,
    base: str,
    specs: tuple[LayerSource, ...],
    *,
    files: dict[str, str] | None = None,
    records: tuple[DependencyLayer, ...] = (),
) -> BuildConfig:
    mount = tmp_path / "source"
    mount.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {"app.py": "import shared\n"}).items():
        (mount / name).write_text(content)
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    return BuildConfig(
        runtime=PYTHON,
        base_image=base,
        target=f"{registry}/{REPOSITORY}:{'a' * 64}",
        workspace=workspace,
        source_dir=mount,
        termination_log=tmp_path / "termination-log",
        allowed_networks=LOOPBACK,
        layers=specs,
        layer_records=records,
    )


def _build(cfg: BuildConfig, registry: str, installed: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    """prepare and push; ``installed`` stands in for what pip installs into deps/python."""
    client = oci.Registry(registry, plain_http=True)
    plan = build.prepare(cfg, client)
    if installed is not None and plan.cached_layer is None:
        assert plan.deps_key is not None
        for name, content in installed.items():
            path = cfg.deps_dir / "python" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return build.push(cfg, plan, client)


def _opt(registry: str, image: str, dest: pathlib.Path) -> dict[str, str]:
    """The pushed image's /opt as a container sees it: every layer applied with its whiteouts."""
    dest.mkdir()
    client = oci.Registry(registry, plain_http=True)
    layers.extract_image_opt(client, oci.Reference.parse(image), dest, Bounds())
    return {
        p.relative_to(dest).as_posix(): p.read_text()
        for p in sorted(dest.rglob("*"))
        if p.is_file()
    }


def _fresh(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    path = tmp_path / name
    path.mkdir()
    return path


# --- what a build with layers pushes ---------------------------------------------------------


def test_layers_land_in_opt_in_order_above_the_runtime_and_below_the_code(
    tmp_path: pathlib.Path, registry: str, base_image: str, served: Served
) -> None:
    url, sha = served.put(
        "shared.zip",
        _zip({"python/shared.py": "WHO = 'archive'\n", "python/both.py": "WHO = 'archive'\n"}),
    )
    image = _push_image(
        registry,
        tmp_path,
        "tools",
        _tar({"opt/python/both.py": "WHO = 'image'\n", "opt/bin/tool": "#!/bin/sh\n",
              "usr/bin/ignored": "outside /opt"}),
    )  # fmt: skip
    specs = (
        LayerSource("shared", archive_url=url, archive_sha256=sha),
        LayerSource("tools", image=image),
    )
    result = _build(_config(_fresh(tmp_path, "one"), registry, base_image, specs), registry)
    client = oci.Registry(registry, plain_http=True)
    found = client.get_manifest(oci.Reference.parse(result["image"]))
    base = client.get_manifest(oci.Reference.parse(base_image))
    assert found is not None
    assert base is not None
    digests = [desc["digest"] for desc in found[1]["layers"]]
    recorded = [rec["digest"] for rec in result["layers"]]
    assert digests == [*(d["digest"] for d in base[1]["layers"]), *recorded, result["codeLayer"]]
    assert _opt(registry, result["image"], tmp_path / "opt") == {
        "bin/tool": "#!/bin/sh\n",
        "kfn/runtime.txt": "the runtime\n",
        "python/both.py": "WHO = 'image'\n",  # the later layer's
        "python/shared.py": "WHO = 'archive'\n",
    }
    config = json.loads(client.get_blob(REPOSITORY, found[1]["config"]["digest"]))
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    assert env["PATH"] == "/opt/bin"
    assert env["LD_LIBRARY_PATH"] == "/opt/lib"
    assert result["layersReused"] == 0
    assert [DependencyLayer.from_json(rec).to_json() for rec in result["layers"]] == result[
        "layers"
    ]


def test_the_functions_own_package_replaces_a_layers_copy_of_it_whole(
    tmp_path: pathlib.Path, registry: str, base_image: str, served: Served
) -> None:
    url, sha = served.put(
        "old.zip",
        _zip({
            "python/pkg/__init__.py": "VERSION = 'layer'\n",
            "python/pkg/only_in_layer.py": "",
            "python/nspkg/from_layer.py": "",
            "python/helper.py": "",
        }),
    )  # fmt: skip
    cfg = _config(
        _fresh(tmp_path, "one"),
        registry,
        base_image,
        (LayerSource("old", archive_url=url, archive_sha256=sha),),
        files={"app.py": "", "requirements.txt": "pkg==2\n"},
    )
    result = _build(
        cfg,
        registry,
        {"pkg/__init__.py": "VERSION = 'function'\n", "nspkg/from_function.py": ""},
    )
    assert result["dependencyLayer"] is not None
    opt = _opt(registry, result["image"], tmp_path / "opt")
    assert opt["python/pkg/__init__.py"] == "VERSION = 'function'\n"
    assert "python/pkg/only_in_layer.py" not in opt  # not merged with the layer's copy
    # A namespace package (no __init__.py) merges, as it does across sys.path entries.
    assert {"python/nspkg/from_layer.py", "python/nspkg/from_function.py"} <= set(opt)
    assert "python/helper.py" in opt


def test_a_function_with_dependencies_but_no_layers_keeps_its_dependency_key(
    tmp_path: pathlib.Path,
) -> None:
    from kfn.builder import deps  # noqa: PLC0415

    code = _fresh(tmp_path, "code")
    plain = deps.key("base", PYTHON, code, ["a==1"])
    assert plain == deps.key("base", PYTHON, code, ["a==1"], over_layers=False)
    assert plain != deps.key("base", PYTHON, code, ["a==1"], over_layers=True)


# --- made once per content -------------------------------------------------------------------


def test_a_rebuild_with_the_recorded_layers_fetches_and_makes_nothing(
    tmp_path: pathlib.Path, registry: str, base_image: str, served: Served
) -> None:
    url, sha = served.put("shared.zip", _zip({"python/shared.py": "X = 1\n"}))
    image = _push_image(registry, tmp_path, "tools", _tar({"opt/bin/tool": "t"}))
    specs = (
        LayerSource("shared", archive_url=url, archive_sha256=sha),
        LayerSource("tools", image=image),
    )
    one = _build(_config(_fresh(tmp_path, "one"), registry, base_image, specs), registry)
    assert served.hits == {"/shared.zip": 1}
    records = tuple(DependencyLayer.from_json(rec) for rec in one["layers"])
    cfg = _config(
        _fresh(tmp_path, "two"), registry, base_image, specs, files={"app.py": "v2"},
        records=records,
    )  # fmt: skip
    two = _build(cfg, registry)
    assert served.hits == {"/shared.zip": 1}
    assert two["layersReused"] == 2
    assert two["layers"] == one["layers"]
    assert two["codeLayer"] != one["codeLayer"]


def test_the_same_content_named_twice_is_fetched_once(
    tmp_path: pathlib.Path, registry: str, base_image: str, served: Served
) -> None:
    url, sha = served.put("shared.zip", _zip({"python/shared.py": "X = 1\n"}))
    specs = (
        LayerSource("a", archive_url=url, archive_sha256=sha),
        LayerSource("b", archive_url=url + "?again", archive_sha256=sha),
    )
    result = _build(_config(_fresh(tmp_path, "one"), registry, base_image, specs), registry)
    assert sum(served.hits.values()) == 1
    assert len(result["layers"]) == 1


def test_a_recorded_layer_the_repository_no_longer_holds_is_made_again(
    tmp_path: pathlib.Path, registry: str, base_image: str, served: Served
) -> None:
    url, sha = served.put("shared.zip", _zip({"python/shared.py": "X = 1\n"}))
    specs = (LayerSource("shared", archive_url=url, archive_sha256=sha),)
    gone = DependencyLayer(layers.key(specs[0]), "sha256:" + "9" * 64, 10, oci.MEDIA_LAYER,
                           "sha256:" + "9" * 64)  # fmt: skip
    cfg = _config(_fresh(tmp_path, "one"), registry, base_image, specs, records=(gone,))
    result = _build(cfg, registry)
    assert served.hits == {"/shared.zip": 1}
    assert result["layersReused"] == 0
    assert result["layers"][0]["digest"] != gone.digest


def test_a_layer_is_keyed_by_its_content_not_its_name_or_address() -> None:
    sha = "c" * 64
    a = LayerSource("a", archive_url="https://one.example/a.zip", archive_sha256=sha)
    b = LayerSource("b", archive_url="https://two.example/b.zip", archive_sha256=sha)
    assert layers.key(a) == layers.key(b)
    digest = "sha256:" + "d" * 64
    assert layers.key(LayerSource("x", image=f"r.example/one@{digest}")) == layers.key(
        LayerSource("y", image=f"mirror.example:5000/two@{digest}")
    )
    assert layers.key(a) != layers.key(LayerSource("x", image=f"r.example/one@{digest}"))


# --- refused ----------------------------------------------------------------------------------


def test_a_layer_archive_whose_digest_differs_fails_the_build_naming_both(
    tmp_path: pathlib.Path, registry: str, base_image: str, served: Served
) -> None:
    url, sha = served.put("shared.zip", _zip({"python/shared.py": "X = 1\n"}))
    specs = (LayerSource("shared", archive_url=url + "?sig=secret", archive_sha256="0" * 64),)
    with pytest.raises(BuildError) as failed:
        _build(_config(_fresh(tmp_path, "one"), registry, base_image, specs), registry)
    assert sha in str(failed.value)
    assert "0" * 64 in str(failed.value)
    assert "secret" not in str(failed.value)


REFUSED_ARCHIVES = {
    "runtime": ({"kfn/runtime/kfn_runtime/server.py": ""}, "writes /opt/kfn"),
    "whiteout": ({"python/.wh.requests": ""}, "names starting with .wh."),
}


@pytest.mark.parametrize("case", REFUSED_ARCHIVES)
def test_a_layer_archive_that_would_touch_the_runtime_or_delete_files_is_refused(
    tmp_path: pathlib.Path, registry: str, base_image: str, served: Served, case: str
) -> None:
    entries, expected = REFUSED_ARCHIVES[case]
    url, sha = served.put("bad.tar.gz", _tar(dict(entries)))
    specs = (LayerSource("bad", archive_url=url, archive_sha256=sha),)
    with pytest.raises(BuildError, match=re.escape(expected)) as failed:
        _build(_config(_fresh(tmp_path, "one"), registry, base_image, specs), registry)
    assert "layer bad" in str(failed.value)


def test_a_layer_image_on_a_refused_address_is_refused_before_connecting(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[urls.Address]:
        asked.append(host)
        return [urls.literal_address("169.254.169.254")]  # type: ignore[list-item]

    digest = "sha256:" + "d" * 64
    cfg = _config(
        _fresh(tmp_path, "one"), registry, base_image,
        (LayerSource("tools", image=f"layers.example/tools@{digest}"),),
    )  # fmt: skip
    store = oci.BlobStore(tmp_path / "blobs")
    with pytest.raises(BuildError, match=re.escape("169.254.169.254, a cloud metadata address")):
        layers.make_all(cfg, oci.Registry(registry, plain_http=True), store, resolver=resolver)
    assert asked == ["layers.example"]


def test_a_missing_layer_image_fails_the_build_naming_it(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    image = f"{registry}/tests/none@sha256:{'d' * 64}"
    cfg = _config(_fresh(tmp_path, "one"), registry, base_image, (LayerSource("t", image=image),))
    with pytest.raises(BuildError, match=r"layer t \(image .*tests/none.*does not hold it"):
        _build(cfg, registry)


# --- an image's /opt -----------------------------------------------------------------------------


def test_an_images_opt_is_its_layers_applied_in_order_with_their_whiteouts(
    tmp_path: pathlib.Path, registry: str
) -> None:
    image = _push_image(
        registry,
        tmp_path,
        "whiteouts",
        _tar({"opt/a/one": "1", "opt/a/two": "2", "opt/b/keep": "k", "opt/gone": "g",
              "etc/passwd": "outside"}),
        _tar({"opt/a/.wh..wh..opq": None, "opt/a/three": "3", "opt/.wh.gone": None,
              "opt/../escape": "x", "opt/b/keep": "k2"}),
    )  # fmt: skip
    assert _opt(registry, image, tmp_path / "opt") == {"a/three": "3", "b/keep": "k2"}


def test_an_image_past_the_archive_bounds_is_refused(tmp_path: pathlib.Path, registry: str) -> None:
    image = _push_image(registry, tmp_path, "big", _tar({"opt/a": "x" * 2048, "opt/b": "y"}))
    dest = _fresh(tmp_path, "opt")
    with pytest.raises(BuildError, match="more than"):
        layers.extract_image_opt(
            oci.Registry(registry, plain_http=True),
            oci.Reference.parse(image),
            dest,
            Bounds(max_bytes=1024),
        )


# --- the build's environment -------------------------------------------------------------------


def test_the_layers_are_read_from_the_build_environment_in_order() -> None:
    digest = "sha256:" + "d" * 64
    env = {
        "KFN_BUILD_RUNTIME": PYTHON,
        "KFN_BUILD_BASE_IMAGE": "r.example/kfn/python:1",
        "KFN_BUILD_TARGET": "r.example/fn/team/hello:1",
        "KFN_BUILD_SOURCE_DIR": "/source",
        "KFN_BUILD_LAYERS": json.dumps([
            {"name": "b", "archive": {"url": "https://x.example/b.zip", "sha256": "c" * 64}},
            {"name": "a", "image": f"r.example/layers/a@{digest}"},
        ]),
    }  # fmt: skip
    cfg = BuildConfig.from_env(env)
    assert [layer.name for layer in cfg.layers] == ["b", "a"]
    assert cfg.layers[0].archive_sha256 == "c" * 64
    assert cfg.layers[1].image == f"r.example/layers/a@{digest}"


@pytest.mark.parametrize(
    "doc",
    [
        {"name": "a", "image": "r.example/layers/a:latest"},
        {"name": "a", "archive": {"url": "https://x.example/a.zip"}},
        {"name": "a"},
        "a",
    ],
)
def test_a_malformed_layer_in_the_build_environment_fails_the_build(doc: object) -> None:
    env = {
        "KFN_BUILD_RUNTIME": PYTHON,
        "KFN_BUILD_BASE_IMAGE": "r.example/kfn/python:1",
        "KFN_BUILD_TARGET": "r.example/fn/team/hello:1",
        "KFN_BUILD_SOURCE_DIR": "/source",
        "KFN_BUILD_LAYERS": json.dumps([doc]),
    }
    with pytest.raises(BuildError, match="the build Job is malformed"):
        BuildConfig.from_env(env)
