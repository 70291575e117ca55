"""A function's folder as the inline source of its Function, and the Function to apply.

``kubectl kfn deploy`` sends the folder it runs in (or the one it is given) as
``spec.source.inline``: every file below it, subfolders included, except what
:mod:`kfn.cli.ignore` leaves out. Inline source is text kept in the Function object itself,
so the folder must fit its limits (:data:`MAX_FILES` files,
:data:`~kfn.api.function.INLINE_SOURCE_LIMIT` characters in all, UTF-8 text, names the API
accepts); what does not fit is refused with a message saying which files and what to do,
before anything reaches the cluster.

``requirements.txt`` (Python) and ``package.json`` / ``package-lock.json`` (Node.js) at the top
of the folder are ordinary files of the source: the build reads them there
(:mod:`kfn.builder.deps`) and installs what they name, with ``spec.dependencies``.

:func:`read` does the reading; :func:`check` decides on names and bytes alone, and
:func:`manifest` makes the Function from ``function.yaml``'s document, so what deploy would
send can be shown and tested without a cluster.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pydantic
import yaml

from kfn.api import function
from kfn.cli import errors, ignore

MAX_FILES: Final = 100
"""Files inline source may hold (``InlineSource.files``' bound)."""
MAX_NAME: Final = 253
SOURCE_HASH_ANNOTATION: Final = "kfn.dev/source-hash"
"""SHA-256 of the inline source deploy sent (:func:`source_hash`): the same code gives the same
value, so a deploy can tell that the code it would send is already there."""
IGNORE_FILE: Final = ".kfnignore"
_HASH_FORMAT: Final = b"kfn-source-v1"
_LARGEST_SHOWN: Final = 5
_WHAT_TO_DO: Final = (
    f"list what the function does not need in {IGNORE_FILE}, or set spec.source in "
    "function.yaml to a configMapRef, an archive or an image instead of inline source"
)


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One file of the source: its ``/``-separated path below the folder, and its text."""

    name: str
    content: str


@dataclasses.dataclass(frozen=True)
class Source:
    """The files deploy sends, sorted by name, and their hash."""

    files: tuple[SourceFile, ...]
    hash: str

    @property
    def characters(self) -> int:
        return sum(len(f.content) for f in self.files)

    def to_spec(self) -> dict[str, Any]:
        """``spec.source`` of the Function."""
        return {"inline": {"files": [{"name": f.name, "content": f.content} for f in self.files]}}


def source_hash(files: Sequence[tuple[str, bytes]]) -> str:
    """Hex SHA-256 over the files' names and bytes, in name order, each length-prefixed so no
    two different sets of files can give the same input."""
    digest = hashlib.sha256(_HASH_FORMAT + b"\0")
    for name, data in sorted(files):
        encoded = name.encode()
        digest.update(b"%d\0%s%d\0" % (len(encoded), encoded, len(data)))
        digest.update(data)
    return digest.hexdigest()


def _name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if re.fullmatch(function.FILE_NAME_PATTERN, name) is None:
        return "holds characters inline source does not allow (only letters, digits, '_', '.', '-')"
    if name.startswith(".."):
        return "starts with '..', which the build's ConfigMap volume reserves"
    return None


def _largest(sizes: Mapping[str, int]) -> str:
    biggest = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:_LARGEST_SHOWN]
    return ", ".join(f"{name} ({size})" for name, size in biggest)


def _top_folders(names: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        top = name.split("/", 1)[0] + "/" if "/" in name else "."
        counts[top] = counts.get(top, 0) + 1
    return _largest(counts)


def check(files: Sequence[tuple[str, bytes]]) -> Source:
    """The source made of these files (name, bytes), or :class:`errors.CliError` saying why
    inline source cannot hold them."""
    if not files:
        raise errors.CliError(
            "there are no files to deploy (is everything left out by .kfnignore?)"
        )
    problems = [f"{name} {problem}" for name, _ in files if (problem := _name_problem(name))]
    if problems:
        raise errors.CliError(
            "these file names cannot be sent as inline source: "
            + "; ".join(problems)
            + f". Rename them or list them in {IGNORE_FILE}"
        )
    texts: dict[str, str] = {}
    binary: list[str] = []
    for name, data in files:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            binary.append(name)
            continue
        if "\0" in text:
            binary.append(name)
            continue
        texts[name] = text
    if binary:
        raise errors.CliError(
            f"inline source holds UTF-8 text only, and {', '.join(sorted(binary))} "
            f"{'is' if len(binary) == 1 else 'are'} not: {_WHAT_TO_DO} (an archive or an "
            "image can hold binary files)"
        )
    if len(files) > MAX_FILES:
        raise errors.CliError(
            f"the folder has {len(files)} files to deploy and inline source holds at most "
            f"{MAX_FILES} (most files in: {_top_folders([n for n, _ in files])}); {_WHAT_TO_DO}"
        )
    sizes = {name: len(text) for name, text in texts.items()}
    total = sum(sizes.values())
    if total > function.INLINE_SOURCE_LIMIT:
        raise errors.CliError(
            f"the files to deploy hold {total} characters and inline source holds at most "
            f"{function.INLINE_SOURCE_LIMIT} (the largest: {_largest(sizes)}); {_WHAT_TO_DO}"
        )
    ordered = tuple(SourceFile(name, texts[name]) for name in sorted(texts))
    return Source(ordered, source_hash(files))


def walk(folder: pathlib.Path, rules: ignore.Rules) -> list[str]:
    """The names of the files below ``folder`` that ``rules`` keep, sorted.

    Left-out directories are not entered. A symbolic link to a file counts as that file; one
    to a directory is refused (following it could leave the folder or loop).
    """
    found: list[str] = []
    for root, dirs, names in os.walk(folder):
        base = pathlib.Path(root).relative_to(folder).as_posix()
        prefix = "" if base == "." else base + "/"
        kept_dirs = []
        for name in sorted(dirs):
            path = prefix + name
            if rules.ignored(path, is_dir=True):
                continue
            if (pathlib.Path(root) / name).is_symlink():
                raise errors.CliError(
                    f"{path} is a symbolic link to a directory, which deploy does not follow: "
                    f"copy the files in or list it in {IGNORE_FILE}"
                )
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(names):
            path = prefix + name
            if rules.ignored(path, is_dir=False):
                continue
            if not (pathlib.Path(root) / name).is_file():
                raise errors.CliError(
                    f"{path} is not a regular file (a broken link, a socket or a pipe?): "
                    f"remove it or list it in {IGNORE_FILE}"
                )
            found.append(path)
    return sorted(found)


def read(folder: pathlib.Path, *, also_ignore: Sequence[str] = ()) -> Source:
    """The inline source of ``folder``: its files less the default ignores, ``.kfnignore`` and
    ``also_ignore`` (more patterns, such as a function.yaml kept elsewhere in the folder)."""
    if not folder.is_dir():
        raise errors.CliError(f"{folder} is not a directory")
    kfnignore = folder / IGNORE_FILE
    text = kfnignore.read_text(encoding="utf-8", errors="replace") if kfnignore.is_file() else None
    rules = ignore.Rules.of(text)
    rules = ignore.Rules([*rules.patterns, *ignore.parse(also_ignore)])
    names = walk(folder, rules)
    return check([(name, (folder / name).read_bytes()) for name in names])


# --- function.yaml -> the Function to apply ------------------------------------------------------


def parse_documents(text: str, *, origin: str = "function.yaml") -> list[dict[str, Any]]:
    """The objects of a YAML stream (empty documents skipped), each a mapping."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise errors.CliError(f"{origin} is not valid YAML: {exc}") from exc
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise errors.CliError(f"document {index + 1} of {origin} is not a YAML mapping")
    return documents


def _validation_message(error: pydantic.ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(object)"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def manifest(document: Mapping[str, Any], folder: pathlib.Path, namespace: str) -> dict[str, Any]:
    """The Function to apply: ``document`` (function.yaml's Function) in ``namespace``, with the
    folder as its inline source when it names no ``spec.source``.

    A Function whose function.yaml sets ``spec.source`` (a configMapRef, an archive, an image
    or inline files of its own) is sent as written. The result is checked against the
    Function model, so a mistake is reported with the API's own message before anything is
    sent. A ``metadata.namespace`` other than ``namespace`` is refused, as kubectl does.
    """
    if document.get("apiVersion") != "kfn.dev/v1alpha1" or document.get("kind") != function.KIND:
        raise errors.CliError(
            "function.yaml must hold a Function (apiVersion: kfn.dev/v1alpha1, kind: Function)"
        )
    result = copy.deepcopy(dict(document))
    metadata = result.setdefault("metadata", {})
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise errors.CliError("the Function in function.yaml needs metadata.name")
    written = metadata.get("namespace")
    if written is not None and written != namespace:
        raise errors.CliError(
            f'the namespace from function.yaml "{written}" does not match the namespace '
            f'"{namespace}": pass --namespace={written} or remove metadata.namespace'
        )
    metadata["namespace"] = namespace
    spec = result.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise errors.CliError("spec of the Function in function.yaml must be a mapping")
    if spec.get("source") is None:
        source = read(folder)
        spec["source"] = source.to_spec()
        annotations = metadata.setdefault("annotations", {})
        annotations[SOURCE_HASH_ANNOTATION] = source.hash
    try:
        function.Function.model_validate(result)
    except pydantic.ValidationError as exc:
        raise errors.CliError(
            f"the Function {metadata['name']} is not valid: {_validation_message(exc)}"
        ) from exc
    return result


def handler_warning(spec: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """A warning when the handler's file is not among the source's files (it may still come
    from a layer), or None."""
    handler = spec.get("handler")
    runtime = spec.get("runtime")
    if not isinstance(handler, str) or "." not in handler or not isinstance(runtime, str):
        return None
    present = set(names)
    if runtime in function.PYTHON_RUNTIMES:
        module = handler.rsplit(".", 1)[0].replace(".", "/")
        wanted = [f"{module}.py", f"{module}/__init__.py"]
    else:
        module = handler.split(".", 1)[0]
        wanted = [f"{module}{ext}" for ext in (".js", ".mjs", ".cjs")]
    if present.intersection(wanted):
        return None
    return (
        f"handler {handler} needs {wanted[0]}, which is not among the files deployed "
        f"(fine if a layer provides it)"
    )
