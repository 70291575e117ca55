"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

Run ``python -m kfn.api.crdgen --out crds/`` (``make crds``). The output is deterministic so a
test can fail when the committed YAML lags behind the models.

pydantic writes JSON Schema (draft 2020-12); the API server wants a *structural* OpenAPI v3
schema. :func:`structural` closes the gap: it inlines ``$ref``, turns ``Optional`` (an ``anyOf``
with ``null``) into a plain optional property, drops ``title`` and ``additionalProperties: false``
(the server prunes unknown fields instead), turns ``const`` into a one-value ``enum``, and writes
defaults produced by default factories so that the server, not just Python, applies them.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pydantic
import pydantic_core
import yaml
from pydantic import json_schema

from kfn.api import function, function_version, meta, toplevel, trigger

HEADER: Final = (
    "# Generated from the models in operator/kfn/api by `python -m kfn.api.crdgen`.\n"
    "# Do not edit: change the models and run `make crds`.\n"
)

_DROPPED_KEYS: Final = frozenset({"title", "$defs"})


class _Generator(json_schema.GenerateJsonSchema):
    """Writes defaults of default factories that build sub-objects (``scale: {}`` and so on).

    Empty-list factories are left out: a stored ``[]`` would only add noise to every object.
    """

    def sort(self, value: Any, parent_key: str | None = None) -> Any:
        """Keep the models' field order: the CRD then reads in the order the code was written."""
        return value

    def get_default_value(self, schema: pydantic_core.core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
            if isinstance(value, pydantic.BaseModel):
                return value
            return json_schema.NoDefault
        return super().get_default_value(schema)


def json_schema_of(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The structural schema of a model, as it appears under ``openAPIV3Schema``."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    return structural(raw, raw.get("$defs", {}))


def structural(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one pydantic JSON Schema node into a structural OpenAPI v3 node (see module doc)."""
    result: dict[str, Any] = {}
    for key, value in _resolve(node, defs).items():
        if key in _DROPPED_KEYS or (key == "additionalProperties" and isinstance(value, bool)):
            continue
        if key == "const":
            result["enum"] = [value]
        elif key in {"additionalProperties", "items"}:
            result[key] = structural(value, defs)
        elif key == "properties":
            result[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "description":
            result[key] = value.replace("``", "")
        elif key == "default":
            if value is not None:
                result[key] = _without_none(value)
        else:
            result[key] = value
    if "properties" in result:
        result.setdefault("type", "object")
    return _ordered(result)


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Inline ``$ref`` and unwrap ``Optional``; sibling keys (a field's description) win."""
    resolved = dict(node)
    if "$ref" in resolved:
        target = structural(defs[resolved.pop("$ref").rsplit("/", 1)[-1]], defs)
        resolved = _merge(target, resolved)
    for combinator in ("anyOf", "allOf", "oneOf"):
        if combinator not in resolved:
            continue
        options = [option for option in resolved.pop(combinator) if option != {"type": "null"}]
        if combinator == "oneOf" or len(options) != 1:
            raise ValueError(f"{combinator} is not structural: {options}")
        resolved = _merge(structural(options[0], defs), resolved)
    return resolved


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**base, **override}
    rules = [
        *base.get("x-kubernetes-validations", []),
        *override.get("x-kubernetes-validations", []),
    ]
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


_KEY_ORDER: Final = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
    "items",
    "properties",
    "additionalProperties",
)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Keys in a fixed, readable order: description first, extensions last."""
    known = [key for key in _KEY_ORDER if key in node]
    rest = sorted(key for key in node if key not in _KEY_ORDER)
    return {key: node[key] for key in [*known, *rest]}


def _printer_columns_ready() -> list[dict[str, Any]]:
    return [
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "description": "Whether the object is ready (the Ready condition).",
        },
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
            "description": "Why it is or is not ready.",
        },
    ]


_AGE: Final = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def _root_schema(
    kind: str,
    description: str,
    spec: type[pydantic.BaseModel],
    status: type[pydantic.BaseModel],
    name_rule: toplevel.NameRule,
) -> dict[str, Any]:
    return {
        "description": description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "Versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {"description": f"Always {kind}.", "type": "string"},
            "metadata": {"type": "object"},
            "spec": json_schema_of(spec),
            "status": json_schema_of(status),
        },
        "x-kubernetes-validations": [name_rule.to_schema()],
    }


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: Sequence[str],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{meta.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "kfn"},
        },
        "spec": {
            "group": meta.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": list(short_names),
                "categories": ["kfn"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": meta.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def function_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of Function."""
    schema = _root_schema(
        function.KIND,
        "A Function: code with a handler, built into an image and run on demand, scaled from "
        "zero by the requests it receives.",
        function.FunctionSpec,
        function.FunctionStatus,
        function.FUNCTION_NAME_RULE,
    )
    columns = [
        *_printer_columns_ready(),
        {
            "name": "Replicas",
            "type": "integer",
            "jsonPath": ".status.replicas",
            "description": "Pods running the function.",
        },
        {
            "name": "URL",
            "type": "string",
            "jsonPath": ".status.url",
            "description": "In-cluster URL of the function.",
        },
        {
            "name": "Runtime",
            "type": "string",
            "jsonPath": ".spec.runtime",
            "priority": 1,
            "description": "Language runtime.",
        },
        {
            "name": "Image",
            "type": "string",
            "jsonPath": ".status.image",
            "priority": 1,
            "description": "Image running, by digest.",
        },
        {
            "name": "Function-URL",
            "type": "string",
            "jsonPath": ".status.functionUrl",
            "priority": 1,
            "description": "The Function URL, served at the cluster's edge.",
        },
        _AGE,
    ]
    return _crd(
        kind=function.KIND,
        plural=function.PLURAL,
        short_names=["fn"],
        schema=schema,
        columns=columns,
    )


def trigger_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of Trigger."""
    schema = _root_schema(
        trigger.KIND,
        "A Trigger: invokes a Function for HTTP requests, on a schedule, for stream records or "
        "for bucket events.",
        trigger.TriggerSpec,
        trigger.TriggerStatus,
        trigger.TRIGGER_NAME_RULE,
    )
    columns: list[dict[str, Any]] = [
        {
            "name": "Function",
            "type": "string",
            "jsonPath": ".spec.functionRef.name",
            "description": "The Function invoked.",
        },
        {
            "name": "Qualifier",
            "type": "string",
            "jsonPath": ".spec.functionRef.qualifier",
            "description": "The Function's version or alias invoked; none for $LATEST.",
            "priority": 1,
        },
        {
            "name": "Type",
            "type": "string",
            "jsonPath": ".status.type",
            "description": "Http, Cron, Stream or Bucket.",
        },
        *_printer_columns_ready(),
        {
            "name": "URL",
            "type": "string",
            "jsonPath": ".status.url",
            "description": "http: the URL routed to the function.",
        },
        _AGE,
    ]
    return _crd(
        kind=trigger.KIND,
        plural=trigger.PLURAL,
        short_names=["trig"],
        schema=schema,
        columns=columns,
    )


def function_version_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of FunctionVersion."""
    schema = _root_schema(
        function_version.KIND,
        "A FunctionVersion: an immutable record of the image and configuration one version of "
        "a Function ran, published by the operator.",
        function_version.FunctionVersionSpec,
        function_version.FunctionVersionStatus,
        function_version.FUNCTION_VERSION_NAME_RULE,
    )
    meta.add_rules(schema["properties"]["spec"], [function_version.IMMUTABLE])
    columns: list[dict[str, Any]] = [
        {
            "name": "Function",
            "type": "string",
            "jsonPath": ".spec.function",
            "description": "The Function this is a version of.",
        },
        {
            "name": "Version",
            "type": "integer",
            "jsonPath": ".spec.version",
            "description": "The version's number.",
        },
        {
            "name": "Routed",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Routed")].status',
            "description": "Whether anything routes to it.",
        },
        {
            "name": "Routed-By",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Routed")].message',
            "description": "What routes to it.",
        },
        {
            "name": "Image",
            "type": "string",
            "jsonPath": ".spec.template.source.image",
            "priority": 1,
            "description": "Its image, by digest.",
        },
        _AGE,
    ]
    return _crd(
        kind=function_version.KIND,
        plural=function_version.PLURAL,
        short_names=["fnv"],
        schema=schema,
        columns=columns,
    )


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-trees out in full: anchors and aliases would only confuse readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(crd: Mapping[str, Any]) -> str:
    """YAML text of one CRD, byte-for-byte stable for the same models."""
    body = yaml.dump(dict(crd), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def generate() -> dict[str, str]:
    """File name -> content of every CRD kfn installs."""
    return {
        f"{meta.GROUP}_{crd['spec']['names']['plural']}.yaml": render(crd)
        for crd in (function_crd(), function_version_crd(), trigger_crd())
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Write the CRDs into ``--out``; with ``--check`` only report whether they are current."""
    parser = argparse.ArgumentParser(prog="python -m kfn.api.crdgen", description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("crds"))
    parser.add_argument("--check", action="store_true", help="fail if files are out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = args.out / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `make crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
