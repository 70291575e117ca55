"""What kfn takes as built: the result its own build Job reported, and the records kept of it.

A tag in the registry proves nothing about who pushed it. The namespace's credential may push
to ``fn/<ns>/…`` (with shared credentials, every namespace's may), and a build's tag is a hash
anyone can compute from the Function, so an image planted under it would be deployed as if kfn
had built it. So:

* a build is finished only when the build Job the operator created succeeded and its build
  container reported the digest it pushed (its termination message, :func:`job_result`), from
  a pod the Job controls, for the Function's own repository;
* the operator records that digest in the Function's status (:class:`Records`,
  ``status.builds``): the status subresource, which only the operator is granted, goes with
  the Function and cannot be set by applying the Function. A build with a record is not built
  again; one without is, whatever tags the registry holds. The Deployment runs
  ``repository@digest``, never a tag;
* the dependency layer a build made is recorded the same way (``status.dependencyLayers``, by
  the key of its dependency set) and handed to later builds of the Function, which reuse it by
  that digest; the builder never looks a layer up by a tag. So are the layers of
  ``spec.layers`` (``status.layers``, by the key of their content: the archive's SHA-256 or the
  image's digest), so an unchanged layer is never fetched or made again.

Records are bounded (:data:`kfn.api.function.BUILD_RECORDS` builds, newest first, and
:data:`kfn.api.function.DEPENDENCY_LAYER_RECORDS` dependency layers and
:data:`kfn.api.function.LAYER_RECORDS` layers, most recently used first), so status
stays small and old ones are forgotten; losing them costs a build, never a wrong image.

Pure: the operator passes the Job, its pods and the status it knows.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pydantic

from kfn.api import function
from kfn.resources import build

_DIGEST: Final = re.compile(function.DIGEST_PATTERN)


@dataclasses.dataclass(frozen=True)
class Result:
    """What a finished build pushed: the image by digest, its dependency layer if any, and the
    layers of ``spec.layers`` it made or reused."""

    image: str
    layer: function.DependencyLayerRecord | None = None
    layers: tuple[function.LayerRecord, ...] = ()


@dataclasses.dataclass(frozen=True)
class Missing:
    """A succeeded build Job whose result cannot be read (its pod is gone): build again."""

    message: str


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A result that does not say what kfn's builder says: taken for nothing."""

    message: str


def _controlled_by(pod: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    uid = (job.get("metadata") or {}).get("uid")
    owners = (pod.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(o.get("uid") == uid and o.get("controller") for o in owners)


def _message(pod: Mapping[str, Any]) -> str | None:
    """The termination message of the pod's build container, if it ended well."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        if cs.get("name") == build.BUILD_CONTAINER and term.get("exitCode") == 0:
            return str(term.get("message") or "")
    return None


def job_result(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], repository: str
) -> Result | Missing | Rejected:
    """The image a succeeded build Job reported pushing to ``repository`` (``host/fn/ns/name``).

    Only a pod the Job controls counts, and only an image of ``repository`` by a digest.
    """
    name = (job.get("metadata") or {}).get("name", "")
    messages = [m for pod in pods if _controlled_by(pod, job) for m in [_message(pod)] if m]
    if not messages:
        return Missing("it succeeded, but its result went with its pod")
    try:
        doc = json.loads(messages[0])
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return Rejected(f"build {name} reported no result kfn can read")
    digest = str(doc.get("digest", ""))
    image = str(doc.get("image", ""))
    if not _DIGEST.match(digest) or image != f"{repository}@{digest}":
        return Rejected(
            f"build {name} reported the image {image[:300]!r}, not one of {repository} by digest"
        )
    return Result(image, _layer(doc.get("dependencyLayer")), _layers(doc.get("layers")))


def _layer(doc: Any) -> function.DependencyLayerRecord | None:
    """The dependency layer of a result, when there is one and it is well formed."""
    if not isinstance(doc, dict):
        return None
    try:
        return function.DependencyLayerRecord.model_validate(doc)
    except pydantic.ValidationError:
        return None


def _layers(docs: Any) -> tuple[function.LayerRecord, ...]:
    """The layers of a result that are well formed, each key once."""
    found: dict[str, function.LayerRecord] = {}
    for doc in docs if isinstance(docs, list) else ():
        try:
            record = function.LayerRecord.model_validate(doc)
        except pydantic.ValidationError:
            continue
        found.setdefault(record.key, record)
    return tuple(found.values())


@dataclasses.dataclass(frozen=True)
class Records:
    """The builds and dependency layers a Function's status records (see the module doc)."""

    builds: tuple[function.BuildRecord, ...] = ()
    layers: tuple[function.DependencyLayerRecord, ...] = ()
    extra_layers: tuple[function.LayerRecord, ...] = ()
    """The layers of ``spec.layers`` (``status.layers``)."""

    @classmethod
    def of(cls, known: function.FunctionStatus | None) -> Records:
        if known is None:
            return cls()
        return cls(
            tuple(known.builds or ()),
            tuple(known.dependency_layers or ()),
            tuple(known.layers or ()),
        )

    def image(self, hash_: str) -> str | None:
        """The image kfn built for the build hash ``hash_``, if it recorded one."""
        return next((b.image for b in self.builds if b.hash == hash_), None)

    def built(self, hash_: str, result: Result) -> Records:
        """These records with the build of ``hash_`` first, and its layer first."""
        builds = [function.BuildRecord(hash=hash_, image=result.image)]
        builds += [b for b in self.builds if b.hash != hash_]
        layers = list(self.layers)
        if result.layer is not None:
            layers = [result.layer, *(la for la in layers if la.key != result.layer.key)]
        used = {la.key for la in result.layers}
        extra = [*result.layers, *(la for la in self.extra_layers if la.key not in used)]
        return Records(
            tuple(builds[: function.BUILD_RECORDS]),
            tuple(layers[: function.DEPENDENCY_LAYER_RECORDS]),
            tuple(extra[: function.LAYER_RECORDS]),
        )

    def without(self, hash_: str) -> Records:
        """These records without the build of ``hash_`` (the registry lost its image)."""
        return dataclasses.replace(self, builds=tuple(b for b in self.builds if b.hash != hash_))
