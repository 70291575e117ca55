"""The identity of a Function's build: :func:`source_hash`.

The hash covers exactly what ends up in the image, so equal hashes mean an existing image can be
reused and any change that needs a rebuild changes the hash:

* a format tag (``kfn-source-v1``), bumped if the image layout ever changes;
* the runtime (it selects the base image);
* the code: the files as (name, bytes) pairs sorted by name, whether they came inline or from a
  ConfigMap (the same files build the same image); for an archive its SHA-256 (the archive's
  content, not its URL); for a prebuilt image its reference;
* the dependencies, in the order given;
* the layers (``spec.layers``), in the order given, each by its content: an archive's SHA-256 or
  an image's reference by digest (not its name, which changes nothing in the image). A Function
  without layers hashes as it did before layers existed.

Not covered: the handler, env, resources, timeout, concurrency and scaling. They are
configuration of the Deployment, so changing them rolls pods without a build.

Each item is written as ``tag NUL length NUL bytes`` so no two different inputs can produce the
same byte stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from kfn.api import function

FORMAT = b"kfn-source-v1"


def source_hash(fn: function.Function, config_map_files: Mapping[str, bytes] | None = None) -> str:
    """Hex SHA-256 of the function's build inputs (see the module documentation).

    ``config_map_files`` is the content of the ConfigMap named by ``source.configMapRef``
    (``data`` encoded as UTF-8 and ``binaryData`` decoded); it is required for such a source,
    since this function does no I/O, and ignored otherwise.
    """
    digest = hashlib.sha256()

    def put(tag: str, data: bytes) -> None:
        digest.update(tag.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)

    spec = fn.spec
    source = spec.source
    put("format", FORMAT)
    put("runtime", (spec.runtime or "").encode())
    if source.inline is not None:
        _put_files(put, {file.name: file.content.encode() for file in source.inline.files})
    elif source.config_map_ref is not None:
        if config_map_files is None:
            raise ValueError(
                f"source.configMapRef {source.config_map_ref.name} needs the ConfigMap's files"
            )
        _put_files(put, config_map_files)
    elif source.archive is not None:
        put("archive-sha256", source.archive.sha256.encode())
    elif source.image is not None:
        put("image", source.image.encode())
    for dependency in spec.dependencies:
        put("dependency", dependency.encode())
    for layer in spec.layers:
        if layer.archive is not None:
            put("layer-archive-sha256", layer.archive.sha256.encode())
        elif layer.image is not None:
            put("layer-image", layer.image.encode())
    return digest.hexdigest()


def _put_files(put: Callable[[str, bytes], None], files: Mapping[str, bytes]) -> None:
    put("files", str(len(files)).encode())
    for name in sorted(files):
        put("file", name.encode())
        put("content", files[name])
