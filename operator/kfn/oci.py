"""OCI images without a container engine: layers, configs, and the distribution API.

kfn assembles images as data: a layer is a tar of files, an image is a config
plus a manifest that lists layers by digest, and a registry stores them through
the OCI distribution API (blob uploads and manifest puts over HTTPS). That is
all a build needs, so no Docker daemon, no privileged container and no image
tool run anywhere. Registries that want a login are signed in to as Docker's
clients do (:class:`Registry`; the pure rules are in :mod:`kfn.ociauth`). This
module uses only the standard library because it also runs inside build Jobs on
a bare runtime base image.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.client
import io
import json
import os
import pathlib
import ssl
import stat
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import IO, Any, BinaryIO, Final, NamedTuple

from kfn import expiring, ociauth

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
#: A Helm chart as an OCI artifact (``helm push``): this config, and the chart's .tgz as layer.
MEDIA_HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
MEDIA_HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
#: The platform of the images kfn makes, and the one picked out of a base image's index.
PLATFORM: Final[Mapping[str, str]] = {"architecture": "amd64", "os": "linux"}
_INDEX_TYPES: Final = (MEDIA_INDEX, DOCKER_MANIFEST_LIST)
_MANIFEST_TYPES: Final = (MEDIA_MANIFEST, MEDIA_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
_CHUNK = 1 << 20
#: Never part of a layer made from a source tree: caches of the machine that made it.
_SKIPPED = frozenset({"__pycache__", ".git", ".mypy_cache", ".pytest_cache"})

#: A login for a registry (defined with the other pure rules of signing in).
Credentials = ociauth.Credentials
#: One manifest of an index: digest, size, media type, platform (``architecture``, ``os``).
IndexEntry = tuple[str, int, str, Mapping[str, str]]


class RegistryError(RuntimeError):
    """The registry refused or failed a request; the message says which."""


class RegistryAuthError(RegistryError):
    """The registry or its token service refused the credentials (or their absence), or
    denied the access asked for; the message names the registry, where the credentials came
    from and what was answered (401 or 403)."""


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
    env_prefixes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Entries put in front of a ``:``-separated variable of the base (``PATH``), which is
    set to the entry alone when the base has none."""


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
        bytecode: bool = False,
    ) -> Layer:
        """Makes a layer from ``(path in image, path on disk)`` pairs.

        Directories are added with their contents. Times are zeroed and owners
        fixed so that the same files always give the same digest, which is what
        lets a build reuse an unchanged dependency layer. ``owner=None`` keeps
        the owners on disk (for a whole root filesystem). Python bytecode
        (``__pycache__``, ``*.pyc``) is left out unless ``bytecode`` is set: a
        caller that compiled it for the image's own interpreter on purpose.
        """
        with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as raw:
            tmp = pathlib.Path(raw.name)
            hasher = _HashingWriter(raw)
            with tarfile.open(fileobj=hasher, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for arcname, source in files:
                    _add_tree(tar, arcname.strip("/"), source, owner, bytecode)
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
                # No file name in the header either (it would be the random temporary one):
                # the same files always give the same compressed blob.
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz,
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
        data = artifact_manifest(config_blob, [layer.blob for layer in layers], annotations)
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


class _Answer(NamedTuple):
    """One HTTP answer, read whole."""

    status: int
    headers: dict[str, str]
    challenges: tuple[str, ...]
    data: bytes


#: Redirects a blob download follows (registries behind a CDN answer ``307``).
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 5


class Registry:
    """A client of the OCI distribution API: HTTPS, logins, and the Docker token flow.

    HTTPS is verified against the system's roots, or only against ``ca_file`` (a PEM bundle)
    when given; ``plain_http`` is for a development registry on the node itself. On ``401``
    the client answers the registry's challenge: ``Basic`` with ``credentials``, ``Bearer``
    by fetching a token from the named token service (with ``credentials`` if any,
    anonymously otherwise) and retrying once. Tokens are cached per realm, service and
    scopes, and sent with the first attempt of later requests that need the same scopes,
    so a push costs one token request per repository and kind of access, not one per blob.
    A refusal raises :class:`RegistryAuthError` naming the registry, the credentials' source
    and the registry's answer. Safe to share between threads.
    """

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        ca_file: str | None = None,
        plain_http: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.credentials = credentials
        self.ca_file = ca_file
        self.plain_http = plain_http
        self.timeout = timeout
        self._context = _tls_context(host, ca_file)
        self._lock = threading.Lock()
        self._tokens: expiring.Expiring[Hashable, str] = expiring.Expiring(ociauth.TOKEN_LIMIT)
        #: The realm and service of the registry's last Bearer challenge, to send cached
        #: tokens with first attempts; ``_basic`` once it asked for Basic authentication.
        self._bearer: tuple[str, str] | None = None
        self._basic = False

    @property
    def scheme(self) -> str:
        return "http" if self.plain_http else "https"

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        """Sends a request, signing in when the registry asks; 401 and 403 raise.

        A body that is a file is sent again from where it started after a challenge. Blob
        uploads rarely need that: the ``POST`` that starts an upload asks for the same scopes
        and leaves the token in the cache, so the ``PUT`` carries it on its first attempt.
        """
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        authorization, cached = self._first_authorization(method, path)

        def send(authorization: str | None) -> _Answer:
            return self._send(
                self.scheme, self.host, method, path,
                body=body, headers=headers, authorization=authorization,
            )  # fmt: skip

        answer = send(authorization)
        if answer.status == 401:
            if cached is not None:
                with self._lock:
                    self._tokens.drop(cached)
            challenge = ociauth.pick_challenge(
                c for value in answer.challenges for c in ociauth.parse_challenges(value)
            )
            if challenge is None:
                raise self._denied(method, path, answer)
            authorization = self._answer_challenge(challenge, method, path, answer, authorization)
            if body is not None and not isinstance(body, bytes):
                body.seek(start)
            answer = send(authorization)
            if answer.status == 401 and authorization.startswith("Basic "):
                raise self._refused(answer)
        if answer.status in (401, 403):
            raise self._denied(method, path, answer)
        return answer

    def _first_authorization(self, method: str, path: str) -> tuple[str | None, Hashable | None]:
        """What the first attempt carries: Basic once the registry asked for it, or a cached
        token for the scopes the request needs (and the cache key, to drop it if refused)."""
        with self._lock:
            if self._basic and self.credentials is not None:
                return self.credentials.basic(), None
            if self._bearer is None:
                return None, None
            scopes = ociauth.request_scopes(method, path)
            if not scopes:
                return None, None
            key = ociauth.scope_key(*self._bearer, scopes)
            token = self._tokens.get(key, time.monotonic())
        return (f"Bearer {token}", key) if token is not None else (None, None)

    def _answer_challenge(
        self,
        challenge: ociauth.Challenge,
        method: str,
        path: str,
        answer: _Answer,
        tried: str | None,
    ) -> str:
        """The ``Authorization`` value that answers ``challenge``."""
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self._denied(method, path, answer)
            if tried is not None and tried.startswith("Basic "):
                raise self._refused(answer)
            with self._lock:
                self._basic = True
            return self.credentials.basic()
        realm, service = challenge.params["realm"], challenge.params.get("service", "")
        with self._lock:
            self._bearer = (realm, service)
        return "Bearer " + self._token(realm, service, challenge.scopes)

    def _token(self, realm: str, service: str, scopes: Sequence[str]) -> str:
        """A token for ``scopes`` from the token service at ``realm``, cached until it expires."""
        key = ociauth.scope_key(realm, service, scopes)
        with self._lock:
            cached = self._tokens.get(key, time.monotonic())
        if cached is not None:
            return cached
        url = urllib.parse.urlsplit(realm)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise RegistryError(f"registry {self.host} names an unusable token service {realm!r}")
        if url.scheme == "http" and self.credentials is not None and not self.plain_http:
            raise RegistryError(
                f"registry {self.host} asks for the credentials of {self.credentials.source} to "
                f"be sent to {realm} over plain HTTP; refusing"
            )
        query = [("service", service)] if service else []
        query += [("scope", scope) for scope in scopes]
        headers = {"Accept": "application/json"}
        if self.credentials is not None:
            query.append(("account", self.credentials.username))
            headers["Authorization"] = self.credentials.basic()
        joined = "&".join(q for q in (url.query, urllib.parse.urlencode(query)) if q)
        target = (url.path or "/") + (f"?{joined}" if joined else "")
        answer = self._send(url.scheme, url.netloc, "GET", target, headers=headers)
        summary = ociauth.summarise_answer(answer.status, answer.data)
        if answer.status in (401, 403):
            raise RegistryAuthError(
                ociauth.refusal_message(
                    self.host,
                    "refused",
                    summary,
                    credentials=self.credentials,
                    token_service=_without_query(realm),
                )
            )
        if answer.status != 200:
            raise RegistryError(f"registry {self.host}: token service {realm}: {summary}")
        try:
            doc = json.loads(answer.data)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token, doc = None, {}
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.host}: token service {realm} answered no token")
        with self._lock:
            lifetime = ociauth.token_seconds(doc.get("expires_in"))
            self._tokens.put(key, token, ociauth.token_until(lifetime, time.monotonic()))
        return token

    def _refused(self, answer: _Answer) -> RegistryAuthError:
        summary = ociauth.summarise_answer(answer.status, answer.data)
        return RegistryAuthError(
            ociauth.refusal_message(self.host, "refused", summary, credentials=self.credentials)
        )

    def _denied(self, method: str, path: str, answer: _Answer) -> RegistryAuthError:
        errors = [
            c.params["error"]
            for value in answer.challenges
            for c in ociauth.parse_challenges(value)
            if c.params.get("error")
        ]
        summary = ociauth.summarise_answer(answer.status, answer.data, ",".join(errors))
        if "invalid_token" in errors:
            return RegistryAuthError(
                f"registry {self.host} did not accept the token of its own token service "
                f"(invalid_token): the registry must trust the service's signing key "
                f"(rootcertbundle) and accept its issuer and service names: {summary}"
            )
        return RegistryAuthError(
            ociauth.refusal_message(
                self.host,
                "denied",
                summary,
                credentials=self.credentials,
                access=ociauth.describe_access(method, path),
            )
        )

    def _send(
        self,
        scheme: str,
        netloc: str,
        method: str,
        target: str,
        *,
        body: bytes | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> _Answer:
        """One HTTP exchange on a fresh connection; transport and TLS failures raise.

        TLS is checked with the registry's context unless ``context`` says otherwise.
        """
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                netloc, timeout=self.timeout, context=context or self._context
            )
        else:
            conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        sent = dict(headers or {})
        if authorization is not None:
            sent["Authorization"] = authorization
        try:
            conn.request(method, target, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
        except ssl.SSLError as exc:
            raise RegistryError(self._tls_failure(netloc, exc)) from exc
        except (OSError, http.client.HTTPException) as exc:
            where = _without_query(target)
            raise RegistryError(f"registry {self.host}: {method} {netloc}{where}: {exc}") from exc
        finally:
            conn.close()
        challenges = tuple(resp.msg.get_all("WWW-Authenticate") or ())
        return _Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, challenges, data)

    def _tls_failure(self, netloc: str, exc: ssl.SSLError) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            trust = (
                f"it is not signed by a CA in the CA bundle {self.ca_file}"
                if self.ca_file
                else "if it comes from a private CA, give kfn the registry's CA bundle (a PEM file)"
            )
            return (
                f"registry {self.host}: the TLS certificate of {netloc} is not trusted "
                f"({exc.verify_message}); {trust}"
            )
        if exc.reason == "WRONG_VERSION_NUMBER":
            return (
                f"registry {self.host}: {netloc} does not answer TLS ({exc}); a plain HTTP "
                "registry must be configured as such (development only)"
            )
        return (
            f"registry {self.host}: TLS with {netloc} failed ({exc}); "
            "check its certificate and the CA bundle"
        )

    def has_blob(self, repository: str, digest: str) -> bool:
        answer = self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if answer.status == 200:
            return True
        if answer.status == 404:
            return False
        raise RegistryError(f"HEAD blob {digest} of {repository}: HTTP {answer.status}")

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A blob's bytes, following the redirects of registries that serve blobs elsewhere.

        A redirected request to another host carries no credentials (its URL is the
        permission) and is checked against the system's roots: a CDN or object store is not
        signed by the registry's private CA.
        """
        path = f"/v2/{repository}/blobs/{digest}"
        answer = self._request("GET", path)
        url = f"{self.scheme}://{self.host}{path}"
        for _ in range(_MAX_REDIRECTS):
            if answer.status not in _REDIRECTS or "location" not in answer.headers:
                break
            url = urllib.parse.urljoin(url, answer.headers["location"])
            parts = urllib.parse.urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if (parts.scheme, parts.netloc) == (self.scheme, self.host):
                answer = self._request("GET", target)
            elif parts.scheme in ("http", "https"):
                answer = self._send(
                    parts.scheme, parts.netloc, "GET", target, context=_system_context()
                )
            else:
                break
        if answer.status != 200:
            summary = ociauth.summarise_answer(answer.status, answer.data)
            raise RegistryError(f"GET blob {digest} of {repository}: {summary}")
        return answer.data

    def _has_blob_to_push(self, repository: str, digest: str) -> bool:
        """:meth:`has_blob` before a push: a denied look is "not there", so that the push
        itself is refused and the message says push, not pull."""
        try:
            return self.has_blob(repository, digest)
        except RegistryAuthError:
            return False

    def push_blob(self, repository: str, blob: Blob, mount_from: str | None = None) -> None:
        """Uploads ``blob`` unless the repository has it (or can mount it)."""
        if self._has_blob_to_push(repository, blob.digest):
            return
        path = f"/v2/{repository}/blobs/uploads/"
        if mount_from:
            path += "?" + urllib.parse.urlencode({"mount": blob.digest, "from": mount_from})
        answer = self._request("POST", path, b"", {"Content-Length": "0"})
        if answer.status == 201:
            return
        if answer.status != 202 or "location" not in answer.headers:
            summary = ociauth.summarise_answer(answer.status, answer.data)
            raise RegistryError(f"start upload to {repository}: {summary}")
        location = urllib.parse.urlsplit(answer.headers["location"])
        query = location.query + ("&" if location.query else "")
        query += urllib.parse.urlencode({"digest": blob.digest})
        with blob.path.open("rb") as body:
            answer = self._request(
                "PUT",
                f"{location.path}?{query}",
                body,
                {"Content-Length": str(blob.size), "Content-Type": "application/octet-stream"},
            )
        if answer.status != 201:
            summary = ociauth.summarise_answer(answer.status, answer.data)
            raise RegistryError(f"upload {blob.digest} to {repository}: {summary}")

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> None:
        """Makes a blob of ``from_repository`` part of ``repository`` without copying it."""
        if self._has_blob_to_push(repository, digest):
            return
        path = f"/v2/{repository}/blobs/uploads/?" + urllib.parse.urlencode(
            {"mount": digest, "from": from_repository}
        )
        answer = self._request("POST", path, b"", {"Content-Length": "0"})
        if answer.status != 201:
            summary = ociauth.summarise_answer(answer.status, answer.data)
            raise RegistryError(f"mount {digest} into {repository}: {summary}")

    def put_manifest(self, ref: Reference, manifest: bytes, media_type: str | None = None) -> str:
        """Stores ``manifest`` under ``ref``'s tag (or its digest); returns its digest.

        ``media_type`` defaults to the document's own ``mediaType`` (an image manifest when it
        has none), so image manifests, indexes and artifacts such as Helm charts all go
        through here.
        """
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        if media_type is None:
            media_type = _declared_media_type(manifest) or MEDIA_MANIFEST
        answer = self._request(
            "PUT",
            f"/v2/{ref.repository}/manifests/{ref.tag or digest}",
            manifest,
            {"Content-Type": media_type},
        )
        if answer.status != 201:
            summary = ociauth.summarise_answer(answer.status, answer.data)
            raise RegistryError(f"put manifest {ref}: {summary}")
        return answer.headers.get("docker-content-digest", digest)

    def put_index(self, ref: Reference, index: bytes) -> str:
        """Stores an OCI image index under ``ref``; returns its digest."""
        return self.put_manifest(ref, index, MEDIA_INDEX)

    def push_index(self, ref: Reference, manifests: Sequence[IndexEntry]) -> str:
        """Stores an index of manifests already in ``ref``'s repository; returns its digest.

        Each entry is ``(digest, size, media type, platform)`` with ``platform`` like
        ``{"architecture": "amd64", "os": "linux"}``.
        """
        return self.put_index(ref, index_manifest(manifests))

    def push_image(self, image: Image, ref: Reference) -> str:
        """Pushes layers, config and manifest; returns the manifest digest."""
        for layer in image.layers:
            self.push_blob(ref.repository, layer.blob)
        self.push_blob(ref.repository, image.config)
        return self.put_manifest(ref, image.manifest, MEDIA_MANIFEST)

    def get_manifest(self, ref: Reference) -> tuple[str, dict[str, Any]] | None:
        """The digest and manifest (or index) that ``ref`` names, or None if it does not exist."""
        answer = self._request(
            "GET",
            f"/v2/{ref.repository}/manifests/{ref.digest or ref.tag or 'latest'}",
            headers={"Accept": ", ".join(_MANIFEST_TYPES)},
        )
        if answer.status == 404:
            return None
        if answer.status != 200:
            summary = ociauth.summarise_answer(answer.status, answer.data)
            raise RegistryError(f"get manifest {ref}: {summary}")
        digest = (
            answer.headers.get("docker-content-digest")
            or "sha256:" + hashlib.sha256(answer.data).hexdigest()
        )
        doc: dict[str, Any] = json.loads(answer.data)
        return digest, doc

    def descriptor(self, ref: Reference) -> tuple[str, int, str] | None:
        """``(digest, size, media type)`` of the manifest ``ref`` names (a HEAD), or None."""
        answer = self._request(
            "HEAD",
            f"/v2/{ref.repository}/manifests/{ref.digest or ref.tag or 'latest'}",
            headers={"Accept": ", ".join(_MANIFEST_TYPES)},
        )
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise RegistryError(f"head manifest {ref}: HTTP {answer.status}")
        digest = answer.headers.get("docker-content-digest", "")
        size = int(answer.headers.get("content-length", "0"))
        media_type = answer.headers.get("content-type", MEDIA_MANIFEST).split(";")[0].strip()
        if not digest or not size:
            raise RegistryError(f"head manifest {ref}: no digest or size in the answer")
        return digest, size, media_type

    def get_image_manifest(
        self, ref: Reference, platform: Mapping[str, str] = PLATFORM
    ) -> tuple[str, dict[str, Any]] | None:
        """Like :meth:`get_manifest`, but an index resolves to its manifest for ``platform``."""
        found = self.get_manifest(ref)
        if found is None or found[1].get("mediaType", MEDIA_MANIFEST) not in _INDEX_TYPES:
            return found
        for entry in found[1].get("manifests", []):
            entry_platform = entry.get("platform") or {}
            if all(entry_platform.get(k) == v for k, v in platform.items()):
                return self.get_manifest(ref.with_digest(entry["digest"]))
        wanted = "/".join(platform.values())
        raise RegistryError(f"image {ref} has no manifest for the platform {wanted}")


def index_manifest(manifests: Sequence[IndexEntry]) -> bytes:
    """The canonical bytes of an OCI image index of ``(digest, size, media type, platform)``."""
    doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {"mediaType": media_type, "digest": digest, "size": size, "platform": dict(platform)}
            for digest, size, media_type, platform in manifests
        ],
    }
    return _canonical(doc)


def artifact_manifest(
    config: Blob, layers: Sequence[Blob], annotations: Mapping[str, str] | None = None
) -> bytes:
    """The canonical bytes of an OCI manifest: an image's, or an artifact's such as a Helm
    chart (config :data:`MEDIA_HELM_CONFIG`, one layer :data:`MEDIA_HELM_CHART`)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return _canonical(manifest)


def _declared_media_type(manifest: bytes) -> str | None:
    try:
        doc = json.loads(manifest)
    except ValueError:
        return None
    value = doc.get("mediaType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


@functools.cache
def _system_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _tls_context(host: str, ca_file: str | None) -> ssl.SSLContext:
    """The system's roots, or only ``ca_file``'s: a private CA is trusted for its registry."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise RegistryError(
            f"registry {host}: the CA bundle {ca_file} cannot be used: {exc}"
        ) from exc


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
    and the manifest travel. A base that is an index stands for its
    :data:`PLATFORM` image.
    """
    found = registry.get_image_manifest(base)
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
    if overrides.env_prefixes:
        env = dict(item.split("=", 1) for item in cfg.get("Env", []))
        for name, prefix in overrides.env_prefixes.items():
            env[name] = f"{prefix}:{env[name]}" if env.get(name) else prefix
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
    return registry.put_manifest(target, _canonical(new_manifest), MEDIA_MANIFEST)


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
    tar: tarfile.TarFile,
    arcname: str,
    source: pathlib.Path,
    owner: tuple[int, int] | None,
    bytecode: bool = False,
) -> None:
    """Adds ``source`` as ``arcname``, recursing into directories in sorted order."""
    if bytecode and (source.name == "__pycache__" or source.suffix == ".pyc"):
        pass  # compiled for the image on purpose
    elif source.name in _SKIPPED or source.suffix == ".pyc":
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
            child_name = f"{arcname}/{child.name}" if arcname else child.name
            _add_tree(tar, child_name, child, owner, bytecode)
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(source)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        with source.open("rb") as f:
            tar.addfile(info, f)
    # Sockets, fifos and devices have no place in an image layer.
