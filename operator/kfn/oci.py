"""OCI images without a container engine: layers, configs, and the distribution API.

kfn assembles images as data: a layer is a tar of files, an image is a config
plus a manifest that lists layers by digest, and a registry stores them through
the OCI distribution API (blob uploads and manifest puts over HTTP). That is
all a build needs, so no Docker daemon, no privileged container and no image
tool run anywhere. This module uses only the standard library because it also
runs inside build Jobs on a bare runtime base image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import json
import os
import pathlib
import stat
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, BinaryIO

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_CHUNK = 1 << 20
#: Never part of a layer made from a source tree: caches of the machine that made it.
_SKIPPED = frozenset({"__pycache__", ".git", ".mypy_cache", ".pytest_cache"})


class RegistryError(RuntimeError):
    """The registry refused or failed a request; the message says which."""


@dataclasses.dataclass(frozen=True)
class Blob:
    """A content-addressed blob on disk."""

    digest: str
    size: int
    media_type: str
    path: pathlib.Path

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclasses.dataclass(frozen=True)
class Layer:
    """A layer blob and its uncompressed digest (the config's ``diff_id``)."""

    blob: Blob
    diff_id: str


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config that decide how its container runs."""

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    workdir: str = ""
    user: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Image:
    """A manifest with its config and layers, ready to push or save."""

    config: Blob
    layers: tuple[Layer, ...]
    manifest: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


class BlobStore:
    """A directory of blobs named by digest (the ``blobs/sha256`` of an OCI layout)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> pathlib.Path:
        algo, hexdigest = digest.split(":", 1)
        return self.root / "blobs" / algo / hexdigest

    def put_bytes(self, data: bytes, media_type: str) -> Blob:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.exists():
            _atomic_write(path, data)
        return Blob(digest, len(data), media_type, path)

    def layer_from_tree(
        self,
        files: Iterable[tuple[str, pathlib.Path]],
        *,
        compress: bool = False,
        owner: tuple[int, int] | None = (0, 0),
    ) -> Layer:
        """Makes a layer from ``(path in image, path on disk)`` pairs.

        Directories are added with their contents. Times are zeroed and owners
        fixed so that the same files always give the same digest, which is what
        lets a build reuse an unchanged dependency layer. ``owner=None`` keeps
        the owners on disk (for a whole root filesystem).
        """
        with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as raw:
            tmp = pathlib.Path(raw.name)
            hasher = _HashingWriter(raw)
            with tarfile.open(fileobj=hasher, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for arcname, source in files:
                    _add_tree(tar, arcname.strip("/"), source, owner)
            diff_id = "sha256:" + hasher.sha.hexdigest()
        if compress:
            return self._compress(tmp, diff_id)
        return self._adopt(tmp, diff_id, MEDIA_LAYER)

    def layer_from_members(self, members: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> Layer:
        """Makes an uncompressed layer from tar headers and file contents."""
        with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as raw:
            tmp = pathlib.Path(raw.name)
            hasher = _HashingWriter(raw)
            with tarfile.open(fileobj=hasher, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for info, data in members:
                    tar.addfile(info, io.BytesIO(data) if data is not None else None)
            diff_id = "sha256:" + hasher.sha.hexdigest()
        return self._adopt(tmp, diff_id, MEDIA_LAYER)

    def _compress(self, tmp: pathlib.Path, diff_id: str) -> Layer:
        import gzip  # noqa: PLC0415 - only builds that compress need it

        with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as raw:
            gz_tmp = pathlib.Path(raw.name)
            with (
                tmp.open("rb") as src,
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz,
            ):
                while chunk := src.read(_CHUNK):
                    gz.write(chunk)
        tmp.unlink()
        return self._adopt(gz_tmp, diff_id, MEDIA_LAYER_GZIP)

    def _adopt(self, tmp: pathlib.Path, diff_id: str, media_type: str) -> Layer:
        digest = "sha256:" + _sha256_file(tmp)
        final = self.path(digest)
        size = tmp.stat().st_size
        if final.exists():
            tmp.unlink()
        else:
            tmp.chmod(0o644)
            tmp.rename(final)
        return Layer(Blob(digest, size, media_type, final), diff_id)

    def image(
        self,
        layers: Sequence[Layer],
        config: ImageConfig,
        *,
        history: Sequence[str] = (),
        annotations: Mapping[str, str] | None = None,
    ) -> Image:
        """Writes the config and manifest blobs of an image made of ``layers``."""
        cfg: dict[str, Any] = {}
        if config.entrypoint:
            cfg["Entrypoint"] = list(config.entrypoint)
        if config.cmd:
            cfg["Cmd"] = list(config.cmd)
        if config.env:
            cfg["Env"] = [f"{k}={v}" for k, v in config.env.items()]
        if config.workdir:
            cfg["WorkingDir"] = config.workdir
        if config.user:
            cfg["User"] = config.user
        if config.labels:
            cfg["Labels"] = dict(config.labels)
        doc = {
            "architecture": "amd64",
            "os": "linux",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created_by": h} for h in history],
        }
        config_blob = self.put_bytes(_canonical(doc), MEDIA_CONFIG)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [layer.blob.descriptor() for layer in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        data = _canonical(manifest)
        self.put_bytes(data, MEDIA_MANIFEST)
        return Image(config_blob, tuple(layers), data)

    def save_index(self, image: Image, ref_name: str) -> None:
        """Records ``image`` as the layout's one image (an OCI image layout)."""
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": image.digest,
                    "size": len(image.manifest),
                    "annotations": {"org.opencontainers.image.ref.name": ref_name},
                }
            ],
        }
        _atomic_write(self.root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _atomic_write(self.root / "index.json", _canonical(index))

    def load_index(self) -> Image | None:
        """The image recorded by :meth:`save_index`, if the layout is complete."""
        try:
            index = json.loads((self.root / "index.json").read_bytes())
            digest = index["manifests"][0]["digest"]
            manifest = self.path(digest).read_bytes()
        except (FileNotFoundError, KeyError, IndexError, ValueError):
            return None
        doc = json.loads(manifest)
        config = json.loads(self.path(doc["config"]["digest"]).read_bytes())
        diff_ids = config["rootfs"]["diff_ids"]
        layers = []
        for desc, diff_id in zip(doc["layers"], diff_ids, strict=True):
            path = self.path(desc["digest"])
            if not path.exists():
                return None
            layers.append(
                Layer(Blob(desc["digest"], desc["size"], desc["mediaType"], path), diff_id)
            )
        cfg = doc["config"]
        return Image(
            Blob(cfg["digest"], cfg["size"], cfg["mediaType"], self.path(cfg["digest"])),
            tuple(layers),
            manifest,
        )


@dataclasses.dataclass(frozen=True)
class Reference:
    """``host[:port]/repository[:tag|@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> Reference:
        registry, _, rest = ref.partition("/")
        if not rest or ("." not in registry and ":" not in registry and registry != "localhost"):
            raise ValueError(f"image reference {ref!r} must name its registry host")
        digest = None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, tag = rest.rsplit(":", 1)
        return cls(registry, rest, tag, digest)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)


class Registry:
    """A client of the OCI distribution API over plain HTTP (a registry on this node)."""

    def __init__(self, host: str, timeout: float = 60.0) -> None:
        self.host = host
        self.timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        except OSError as exc:
            raise RegistryError(f"registry {self.host}: {method} {path}: {exc}") from exc
        finally:
            conn.close()

    def has_blob(self, repository: str, digest: str) -> bool:
        status, _, _ = self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        return status == 200

    def get_blob(self, repository: str, digest: str) -> bytes:
        status, _, data = self._request("GET", f"/v2/{repository}/blobs/{digest}")
        if status != 200:
            raise RegistryError(f"GET blob {digest} of {repository}: HTTP {status}")
        return data

    def push_blob(self, repository: str, blob: Blob, mount_from: str | None = None) -> None:
        """Uploads ``blob`` unless the repository has it (or can mount it)."""
        if self.has_blob(repository, blob.digest):
            return
        path = f"/v2/{repository}/blobs/uploads/"
        if mount_from:
            path += "?" + urllib.parse.urlencode({"mount": blob.digest, "from": mount_from})
        status, headers, data = self._request("POST", path, b"", {"Content-Length": "0"})
        if status == 201:
            return
        if status != 202 or "location" not in headers:
            raise RegistryError(f"start upload to {repository}: HTTP {status} {data[:200]!r}")
        location = urllib.parse.urlsplit(headers["location"])
        query = location.query + ("&" if location.query else "")
        query += urllib.parse.urlencode({"digest": blob.digest})
        with blob.path.open("rb") as body:
            status, _, data = self._request(
                "PUT",
                f"{location.path}?{query}",
                body,
                {"Content-Length": str(blob.size), "Content-Type": "application/octet-stream"},
            )
        if status != 201:
            raise RegistryError(
                f"upload {blob.digest} to {repository}: HTTP {status} {data[:200]!r}"
            )

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> None:
        """Makes a blob of ``from_repository`` part of ``repository`` without copying it."""
        if self.has_blob(repository, digest):
            return
        path = f"/v2/{repository}/blobs/uploads/?" + urllib.parse.urlencode(
            {"mount": digest, "from": from_repository}
        )
        status, _, data = self._request("POST", path, b"", {"Content-Length": "0"})
        if status != 201:
            raise RegistryError(f"mount {digest} into {repository}: HTTP {status} {data[:200]!r}")

    def put_manifest(self, ref: Reference, manifest: bytes) -> str:
        """Stores ``manifest`` under ``ref``'s tag (or its digest); returns its digest."""
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        status, headers, data = self._request(
            "PUT",
            f"/v2/{ref.repository}/manifests/{ref.tag or digest}",
            manifest,
            {"Content-Type": MEDIA_MANIFEST},
        )
        if status != 201:
            raise RegistryError(f"put manifest {ref}: HTTP {status} {data[:300]!r}")
        return headers.get("docker-content-digest", digest)

    def push_image(self, image: Image, ref: Reference) -> str:
        """Pushes layers, config and manifest; returns the manifest digest."""
        for layer in image.layers:
            self.push_blob(ref.repository, layer.blob)
        self.push_blob(ref.repository, image.config)
        return self.put_manifest(ref, image.manifest)

    def get_manifest(self, ref: Reference) -> tuple[str, dict[str, Any]] | None:
        """The digest and manifest that ``ref`` names, or None if it does not exist."""
        status, headers, data = self._request(
            "GET",
            f"/v2/{ref.repository}/manifests/{ref.digest or ref.tag or 'latest'}",
            headers={"Accept": f"{MEDIA_MANIFEST}, {DOCKER_MANIFEST}"},
        )
        if status == 404:
            return None
        if status != 200:
            raise RegistryError(f"get manifest {ref}: HTTP {status} {data[:200]!r}")
        digest = (
            headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(data).hexdigest()
        )
        doc: dict[str, Any] = json.loads(data)
        return digest, doc


def extend(
    registry: Registry,
    base: Reference,
    *,
    store: BlobStore,
    layers: Sequence[Layer],
    overrides: ImageConfig,
    target: Reference,
    history: str = "",
) -> str:
    """Pushes ``base`` plus ``layers`` as ``target``; returns the new manifest's digest.

    The base's layers are never downloaded: they are mounted from the base's
    repository inside the registry, and only the new layers, the new config
    and the manifest travel.
    """
    found = registry.get_manifest(base)
    if found is None:
        raise RegistryError(f"base image {base} not found in {registry.host}")
    _, manifest = found
    base_config: dict[str, Any] = json.loads(
        registry.get_blob(base.repository, manifest["config"]["digest"])
    )
    cfg = dict(base_config.get("config", {}))
    if overrides.entrypoint:
        cfg["Entrypoint"] = list(overrides.entrypoint)
        cfg.pop("Cmd", None)
    if overrides.cmd:
        cfg["Cmd"] = list(overrides.cmd)
    if overrides.env:
        env = dict(item.split("=", 1) for item in cfg.get("Env", []))
        env.update(overrides.env)
        cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
    if overrides.workdir:
        cfg["WorkingDir"] = overrides.workdir
    if overrides.user:
        cfg["User"] = overrides.user
    if overrides.labels:
        cfg["Labels"] = {**cfg.get("Labels", {}), **overrides.labels}
    new_config = {
        **base_config,
        "config": cfg,
        "rootfs": {
            "type": "layers",
            "diff_ids": [*base_config["rootfs"]["diff_ids"], *(la.diff_id for la in layers)],
        },
        "history": [*base_config.get("history", []), {"created_by": history or "kfn layers"}],
    }
    config_blob = store.put_bytes(_canonical(new_config), MEDIA_CONFIG)
    for desc in manifest["layers"]:
        registry.mount_blob(target.repository, desc["digest"], base.repository)
    for layer in layers:
        registry.push_blob(target.repository, layer.blob)
    registry.push_blob(target.repository, config_blob)
    new_manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [*manifest["layers"], *(la.blob.descriptor() for la in layers)],
    }
    return registry.put_manifest(target, _canonical(new_manifest))


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _sha256_file(path: pathlib.Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _atomic_write(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes what passes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.out.write(view)
        return len(view)


def _add_tree(
    tar: tarfile.TarFile, arcname: str, source: pathlib.Path, owner: tuple[int, int] | None
) -> None:
    """Adds ``source`` as ``arcname``, recursing into directories in sorted order."""
    if source.name in _SKIPPED or source.suffix == ".pyc":
        return
    st = source.lstat()
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid, info.gid = owner if owner is not None else (st.st_uid, st.st_gid)
    info.mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        if arcname:
            tar.addfile(info)
        for child in sorted(source.iterdir()):
            _add_tree(tar, f"{arcname}/{child.name}" if arcname else child.name, child, owner)
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(source)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        with source.open("rb") as f:
            tar.addfile(info, f)
    # Sockets, fifos and devices have no place in an image layer.
