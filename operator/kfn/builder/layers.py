"""The layers of ``spec.layers``: each one's files under ``/opt``, made once per content.

A layer is what a Lambda layer is: files that land in ``/opt`` (``python/``,
``nodejs/node_modules/``, ``bin/``, ``lib/``...), several layers in order, a later one's files
over an earlier one's. Each becomes one image layer, placed above the runtime and below the
function's dependency and code layers, so the function's own files win (see
:func:`shadow_layers` for how its dependencies replace a layer's copy of a package whole).

* **An archive** (zip or tar.gz) is fetched and checked exactly as an archive source is
  (:func:`kfn.builder.source.download`: only from addresses the URL rules allow, refused unless
  its SHA-256 is the one in the spec) and unpacked within the same bounds.
* **An image** pinned by digest gives its ``/opt``: its layers are read in order, whiteouts
  applied, and only what lies under ``opt/`` is kept, so an image built ``FROM scratch`` with
  ``COPY python /opt/python`` (as a Lambda container image copies a layer in) is a layer. The
  registry's host is checked against the URL rules first; an image on the build's own registry
  is pulled with the namespace's login, any other anonymously. Every blob is checked against its
  digest.

A layer's **key** is its content: the archive's SHA-256 or the image's digest. A layer the
operator recorded for that key (``KFN_BUILD_LAYER_RECORDS``, from ``status.layers``) is reused
by its digest while the Function's repository holds the blob: nothing is fetched or made
again. The same content named twice in one spec is made once.

``/opt/kfn`` holds kfn's runtime, so a layer that writes there is refused, as is an archive
holding a whiteout (``.wh.``) entry, which would delete files of the layers below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import posixpath
import shutil
import tarfile
from collections.abc import Callable, Sequence
from typing import Any, Final

from kfn import oci, urls
from kfn.builder import fetch, source
from kfn.builder.config import Bounds, BuildConfig, BuildError, DependencyLayer, LayerSource

#: Bumped when the way a layer is made changes, so old recorded layers are not reused.
LAYER_FORMAT: Final = "kfn-layer-v1"
#: Where the layers' files land in the image.
OPT: Final = "opt"
#: The directory below /opt that kfn's runtime lives in; no layer may write there.
RESERVED: Final = "kfn"
WHITEOUT: Final = ".wh."
OPAQUE: Final = ".wh..wh..opq"
#: The most one blob of a layer image may weigh (as an archive source's download).
MAX_BLOB_BYTES: Final = source.MAX_ARCHIVE_BYTES


@dataclasses.dataclass(frozen=True)
class Made:
    """One layer of the image, whether it was made now or reused, and its record."""

    source: LayerSource
    layer: oci.Layer
    record: DependencyLayer
    reused: bool


def key(layer: LayerSource) -> str:
    """Hex SHA-256 of what decides the layer's content: its archive's SHA-256 or its image's
    digest (not its name or URL: the same content is the same layer)."""
    digest = hashlib.sha256()
    if layer.archive_sha256 is not None:
        parts = (LAYER_FORMAT, "archive", layer.archive_sha256)
    else:
        parts = (LAYER_FORMAT, "image", str(oci.Reference.parse(layer.image or "").digest))
    for part in parts:
        data = part.encode()
        digest.update(str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


def describe(layer: LayerSource) -> str:
    """The layer as messages name it; an archive's URL redacted."""
    if layer.archive_url is not None:
        return f"layer {layer.name} (archive {urls.redact(layer.archive_url)})"
    return f"layer {layer.name} (image {layer.image})"


def make_all(
    cfg: BuildConfig,
    registry: oci.Registry,
    store: oci.BlobStore,
    *,
    resolver: fetch.Resolver = fetch.resolve,  # tests give a resolver of their own
) -> list[Made]:
    """The image layers of ``cfg.layers`` in order: reused by a recorded digest, else made."""
    made: dict[str, Made] = {}
    out: list[Made] = []
    for index, layer in enumerate(cfg.layers):
        k = key(layer)
        if k not in made:
            made[k] = _reused(cfg, registry, layer, k) or _make(
                cfg,
                registry,
                store,
                layer,
                k=k,
                tree=cfg.layers_dir / str(index),
                resolver=resolver,
            )
        else:
            print(f"{describe(layer)}: the same content as an earlier layer", flush=True)
        out.append(dataclasses.replace(made[k], source=layer))
    return out


def _reused(cfg: BuildConfig, registry: oci.Registry, layer: LayerSource, k: str) -> Made | None:
    recorded = next((r for r in cfg.layer_records if r.key == k), None)
    if recorded is None:
        return None
    repository = oci.Reference.parse(cfg.target).repository
    if not registry.has_blob(repository, recorded.digest):
        print(f"{describe(layer)}: the recorded layer {recorded.digest} is gone", flush=True)
        return None
    print(f"{describe(layer)}: unchanged, reusing layer {recorded.digest}", flush=True)
    blob = oci.Blob(recorded.digest, recorded.size, recorded.media_type, pathlib.Path("/dev/null"))
    return Made(layer, oci.Layer(blob, recorded.diff_id), recorded, reused=True)


def _make(
    cfg: BuildConfig,
    registry: oci.Registry,
    store: oci.BlobStore,
    layer: LayerSource,
    *,
    k: str,
    tree: pathlib.Path,
    resolver: fetch.Resolver,
) -> Made:
    tree.mkdir(parents=True)
    tree.chmod(0o755)
    if layer.archive_url is not None:
        archive = cfg.layers_dir / "archive"
        print(f"{describe(layer)}: downloading", flush=True)
        source.download(
            layer.archive_url, layer.archive_sha256, archive, allowed=cfg.allowed_networks
        )
        try:
            files = source.unpack(archive, tree, cfg.bounds)
        except BuildError as exc:
            raise BuildError(f"{describe(layer)}: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)
        whiteouts = [f for f in files if posixpath.basename(f).startswith(WHITEOUT)]
        if whiteouts:
            raise BuildError(
                f"{describe(layer)} holds {whiteouts[0]}: names starting with {WHITEOUT} mark "
                "deleted files in image layers, so a layer cannot hold them"
            )
        print(f"{describe(layer)}: sha256 verified, {len(files)} file(s)", flush=True)
    else:
        count = extract_image_opt(
            _image_client(cfg, registry, layer, resolver),
            oci.Reference.parse(layer.image or ""),
            tree,
            cfg.bounds,
            what=describe(layer),
        )
        print(f"{describe(layer)}: {count} entries of its /opt", flush=True)
    if (tree / RESERVED).exists():
        raise BuildError(
            f"{describe(layer)} writes /opt/{RESERVED}, which holds kfn's runtime; "
            "move its files elsewhere under /opt"
        )
    made = store.layer_from_tree([(OPT, tree)])
    shutil.rmtree(tree)
    record = DependencyLayer(
        k, made.blob.digest, made.blob.size, made.blob.media_type, made.diff_id
    )
    return Made(layer, made, record, reused=False)


def _image_client(
    cfg: BuildConfig, registry: oci.Registry, layer: LayerSource, resolver: fetch.Resolver
) -> oci.Registry:
    """The client to pull the layer image with: the build's own for its registry (the
    namespace's login), else an anonymous one, once its host passed the URL rules."""
    ref = oci.Reference.parse(layer.image or "")
    if ref.registry == registry.host:
        return registry
    host, _, port = ref.registry.partition(":")
    addresses = list(resolver(host, int(port) if port.isdigit() else 443))
    problem = urls.refusal(host, addresses, cfg.allowed_networks)
    if problem is not None:
        raise fetch.RefusedAddressError(
            f"refusing to pull {describe(layer)}: {problem}; {urls.ADVICE}"
        )
    return oci.Registry(ref.registry, timeout=120)


def extract_image_opt(
    registry: oci.Registry,
    ref: oci.Reference,
    dest: pathlib.Path,
    bounds: Bounds,
    *,
    what: str = "",
    prefix: str = OPT,
) -> int:
    """Writes what the image ``ref`` holds under ``prefix/`` into ``dest``, its layers applied
    in order with their whiteouts; returns the entries written."""
    what = what or f"image {ref}"
    try:
        found = registry.get_image_manifest(ref)
    except oci.RegistryError as exc:
        raise BuildError(f"{what}: {exc}") from exc
    if found is None:
        raise BuildError(f"{what}: the registry {ref.registry} does not hold it")
    budget = _Budget(bounds, what)
    for desc in found[1].get("layers", []):
        size = int(desc.get("size", 0))
        if size > MAX_BLOB_BYTES:
            raise BuildError(f"{what}: a layer of {size} bytes is larger than a build fetches")
        data = registry.get_blob(ref.repository, str(desc["digest"]))
        if "sha256:" + hashlib.sha256(data).hexdigest() != desc["digest"]:
            raise BuildError(f"{what}: the blob {desc['digest']} does not match its digest")
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                apply_layer(tar, dest, prefix, budget)
        except tarfile.TarError as exc:
            raise BuildError(
                f"{what}: cannot read its layer {desc['digest']} ({desc.get('mediaType')}): {exc}"
            ) from exc
    return budget.entries


class _Budget:
    """What the layers have written so far, against the archive bounds."""

    def __init__(self, bounds: Bounds, what: str) -> None:
        self.bounds, self.what = bounds, what
        self.bytes = 0
        self.entries = 0

    def take(self, size: int) -> None:
        self.entries += 1
        self.bytes += size
        if self.bytes > self.bounds.max_bytes:
            raise BuildError(f"{self.what}: {self.bounds.too_large()}")
        if self.entries > self.bounds.max_files:
            raise BuildError(f"{self.what}: {self.bounds.too_many()}")


def _below(name: str, prefix: str) -> str | None:
    """``name`` relative to ``prefix/`` when it lies below it (never with ``..``), else None."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if len(parts) < 2 or parts[0] != prefix or ".." in parts:
        return None
    return "/".join(parts[1:])


def _clear(path: pathlib.Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _directory(dest: pathlib.Path, rel: str) -> pathlib.Path:
    """``dest/rel`` as a real directory: whatever a lower layer left in its way (a file, a
    link) is replaced, as an upper layer's directory replaces it, and no link is followed."""
    path = dest
    for part in rel.split("/") if rel else ():
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        if not path.exists():
            path.mkdir(mode=0o755)
    return path


def apply_layer(tar: tarfile.TarFile, dest: pathlib.Path, prefix: str, budget: _Budget) -> None:
    """Applies one image layer's entries below ``prefix/`` to ``dest``: whiteouts first (they
    remove what the layers below left), then files, directories and links."""
    members = tar.getmembers()
    for member in members:
        rel = _below(member.name, prefix)
        if rel is None:
            continue
        parent, base = posixpath.split(rel)
        if base == OPAQUE:
            target = _directory(dest, parent)
            for child in list(target.iterdir()):
                _clear(child)
        elif base.startswith(WHITEOUT):
            _clear(_directory(dest, parent) / base[len(WHITEOUT) :])
    for member in members:
        rel = _below(member.name, prefix)
        if rel is None or posixpath.basename(rel).startswith(WHITEOUT):
            continue
        _write(tar, member, rel, dest=dest, prefix=prefix, budget=budget)


def _write(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    rel: str,
    *,
    dest: pathlib.Path,
    prefix: str,
    budget: _Budget,
) -> None:
    if member.isdir():
        budget.take(0)
        _directory(dest, rel)
        return
    parent, base = posixpath.split(rel)
    target = _directory(dest, parent) / base
    if member.isreg():
        budget.take(member.size)
        _clear(target)
        extracted = tar.extractfile(member)
        assert extracted is not None
        with extracted, target.open("wb") as out:
            shutil.copyfileobj(extracted, out)
        target.chmod(_mode(member.mode))
    elif member.issym():
        budget.take(0)
        _clear(target)
        os.symlink(member.linkname, target)
    elif member.islnk():
        linked = _below(member.linkname, prefix)
        origin = (
            _directory(dest, posixpath.dirname(linked)) / posixpath.basename(linked)
            if linked
            else None
        )
        if origin is None or origin.is_symlink() or not origin.is_file():
            raise BuildError(
                f"{budget.what}: /{member.name} is a hard link to /{member.linkname}, outside "
                f"its /{prefix} or not a file"
            )
        budget.take(origin.stat().st_size)
        _clear(target)
        shutil.copyfile(origin, target)
        target.chmod(_mode(member.mode))
    # Devices and fifos have no place in a layer.


def _mode(mode: int) -> int:
    """Readable by everyone, executable when it was: the function runs as another user."""
    return 0o755 if mode & 0o111 else 0o644


# --- the function's dependencies over the layers ---------------------------------------------


def _python_packages(root: pathlib.Path) -> list[pathlib.Path]:
    """Regular packages (with ``__init__.py``): each shadows a layer's package whole, as an
    earlier ``sys.path`` entry would. Namespace packages merge, as they do across paths."""
    return [p for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]


def _node_packages(root: pathlib.Path) -> list[pathlib.Path]:
    """Every package directory, ``@scope/name`` inside its scope; not ``.bin``."""
    found: list[pathlib.Path] = []
    for entry in root.iterdir():
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if entry.name.startswith("@"):
            found += [p for p in entry.iterdir() if p.is_dir()]
        else:
            found.append(entry)
    return found


PACKAGES: Final[dict[str, Callable[[pathlib.Path], list[pathlib.Path]]]] = {
    "python": _python_packages,
    "nodejs": _node_packages,
}


def shadow_layers(installed: pathlib.Path, language: str) -> list[str]:
    """Marks each package of the function's installed dependencies opaque (an OCI whiteout,
    ``<package>/.wh..wh..opq``), so a layer's copy of the same package below it is hidden
    whole rather than merged file by file with the function's. Returns the packages marked."""
    marked: list[str] = []
    for package in sorted(PACKAGES[language](installed)):
        (package / OPAQUE).touch()
        marked.append(package.relative_to(installed).as_posix())
    return marked


def records(made: Sequence[Made]) -> list[dict[str, Any]]:
    """What the operator records of the layers (each content once, in order)."""
    seen: dict[str, dict[str, Any]] = {}
    for m in made:
        seen.setdefault(m.record.key, m.record.to_json())
    return list(seen.values())
