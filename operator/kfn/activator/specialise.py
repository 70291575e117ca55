"""What a pool pod is told to become: pure decisions, no I/O.

A warm pool's pod is the function's runtime started with nothing of the function
(docs/design/warm-pools.md). To make it the pod the kubelet would have started, the
activator sends it what the kubelet would have given that pod:

* the **environment**, composed as the kubelet and the container runtime compose it: the
  image config's ``Env``, under the container's variables; ``envFrom`` sources first, then
  ``env`` in order, each literal value with ``$(NAME)`` references expanded against the
  variables defined before it and ``$$`` turned into ``$`` (values read from a Secret or a
  ConfigMap are taken as they are); a missing source or key that is not optional is an error,
  as it keeps the kubelet from starting the container;
* the **layers** of the function's image above the pool's base image (dependencies and code),
  which must extend that base exactly;
* the head of ``POST /_kfn/specialise`` (the runtime contract, section "Pool mode").
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

#: What the kubelet takes as a variable name from an ``envFrom`` source; other keys are
#: skipped (Kubernetes' ``IsEnvVarName``).
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*\Z")


class UnresolvableError(Exception):
    """The container could not start as the function's pod would (a Secret, a ConfigMap or
    a key it needs is missing): the normal path reports that to the user."""


@dataclasses.dataclass(frozen=True, slots=True)
class Layer:
    """One layer the pod must extract: a blob of the function image's repository."""

    digest: str
    size: int
    media_type: str

    def describe(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size, "mediaType": self.media_type}


@dataclasses.dataclass(frozen=True, slots=True)
class Sources:
    """The data of the Secrets and ConfigMaps a container names (None: it does not exist)."""

    secrets: Mapping[str, Mapping[str, bytes] | None]
    config_maps: Mapping[str, Mapping[str, str] | None]


def own_layers(image: Mapping[str, Any], base: Mapping[str, Any]) -> tuple[Layer, ...] | None:
    """The layers of ``image`` (a manifest) above ``base`` (the pool's image manifest), or
    None when ``image`` was not built on exactly that base."""
    base_digests = [str(d.get("digest")) for d in base.get("layers") or []]
    layers = list(image.get("layers") or [])
    if [str(d.get("digest")) for d in layers[: len(base_digests)]] != base_digests:
        return None
    return tuple(
        Layer(str(d["digest"]), int(d["size"]), str(d["mediaType"]))
        for d in layers[len(base_digests) :]
    )


def referenced(container: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """The names of the Secrets and of the ConfigMaps a container's environment reads."""
    secrets: set[str] = set()
    config_maps: set[str] = set()
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            secrets.add(source["secretRef"]["name"])
        if "configMapRef" in source:
            config_maps.add(source["configMapRef"]["name"])
    for var in container.get("env") or []:
        value_from = var.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            secrets.add(value_from["secretKeyRef"]["name"])
        if "configMapKeyRef" in value_from:
            config_maps.add(value_from["configMapKeyRef"]["name"])
    return frozenset(secrets), frozenset(config_maps)


def environment(
    image_env: Sequence[str], container: Mapping[str, Any], sources: Sources
) -> dict[str, str]:
    """The environment of the container's process (see the module doc)."""
    defined: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        data = _source_data(source, sources)
        for key, value in data.items():
            name = prefix + key
            if _ENV_NAME.match(name):
                defined[name] = value
    for var in container.get("env") or []:
        name = str(var["name"])
        if "valueFrom" not in var:
            defined[name] = expand(str(var.get("value") or ""), defined)
            continue
        found = _key_value(var["valueFrom"], sources)
        if found is not None:
            defined[name] = found
    result = dict(item.split("=", 1) for item in image_env if "=" in item)
    result.update(defined)
    return result


def _source_data(source: Mapping[str, Any], sources: Sources) -> Mapping[str, str]:
    if "secretRef" in source:
        ref = source["secretRef"]
        secret = sources.secrets.get(ref["name"])
        if secret is None:
            if ref.get("optional"):
                return {}
            raise UnresolvableError(f"Secret {ref['name']!r} not found")
        return {key: value.decode("utf-8", "replace") for key, value in secret.items()}
    ref = source["configMapRef"]
    config_map = sources.config_maps.get(ref["name"])
    if config_map is None:
        if ref.get("optional"):
            return {}
        raise UnresolvableError(f"ConfigMap {ref['name']!r} not found")
    return config_map


def _key_value(value_from: Mapping[str, Any], sources: Sources) -> str | None:
    if "secretKeyRef" in value_from:
        ref = value_from["secretKeyRef"]
        secret = sources.secrets.get(ref["name"])
        raw = None if secret is None else secret.get(ref["key"])
        value = None if raw is None else raw.decode("utf-8", "replace")
        kind = "Secret"
    else:
        ref = value_from["configMapKeyRef"]
        config_map = sources.config_maps.get(ref["name"])
        value = None if config_map is None else config_map.get(ref["key"])
        kind = "ConfigMap"
    if value is None and not ref.get("optional"):
        raise UnresolvableError(f"{kind} {ref['name']!r} has no key {ref['key']!r}")
    return value


def expand(value: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' expansion of a container variable's value: ``$$`` is ``$``, ``$(NAME)`` the
    value of a variable defined before (left as written when there is none), any other ``$``
    itself."""
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "$" and i + 1 < len(value):
            following = value[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2 : end]
                    out.append(defined.get(name, value[i : end + 1]))
                    i = end + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


def head(handler: str, env: Mapping[str, str], layers: Sequence[Layer]) -> bytes:
    """The first line of the ``POST /_kfn/specialise`` body; the blobs follow it in order."""
    document = {"handler": handler, "env": dict(env), "layers": [la.describe() for la in layers]}
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"
