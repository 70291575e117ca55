"""The committed CRDs are current, and structural in the ways the API server requires."""

from __future__ import annotations

import difflib
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kfn.api import crdgen

CRDS = pathlib.Path(__file__).resolve().parents[3] / "crds"


def test_committed_crds_equal_freshly_generated_ones() -> None:
    generated = crdgen.generate()
    committed = {path.name: path.read_text() for path in CRDS.glob("*.yaml")}
    assert sorted(committed) == sorted(generated), "CRD files differ; run `make crds`"
    for name, text in generated.items():
        diff = "".join(
            difflib.unified_diff(
                committed[name].splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"crds/{name} (committed)",
                f"crds/{name} (generated)",
            )
        )
        assert not diff, f"crds/{name} is out of date; run `make crds`\n{diff}"


def test_generation_is_deterministic() -> None:
    assert crdgen.generate() == crdgen.generate()


def test_check_mode_reports_a_stale_file(tmp_path: pathlib.Path) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    stale = next(tmp_path.glob("*.yaml"))
    stale.write_text(stale.read_text() + "# edited by hand\n")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for crd in (crdgen.function_crd(), crdgen.trigger_crd()):
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            yield kind, version["schema"]["openAPIV3Schema"]


def _nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def _all_nodes() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{kind}{path}", node)
        for kind, schema in _schemas()
        for path, node in _nodes(schema["properties"]["spec"], ".spec")
    ] + [
        (f"{kind}{path}", node)
        for kind, schema in _schemas()
        for path, node in _nodes(schema["properties"]["status"], ".status")
    ]


NODES = _all_nodes()


@pytest.mark.parametrize(("path", "node"), NODES, ids=[path for path, _ in NODES])
def test_every_schema_node_is_structural(path: str, node: dict[str, Any]) -> None:
    forbidden = {"$ref", "anyOf", "oneOf", "allOf", "not", "title", "const", "$defs"}
    assert not forbidden & node.keys(), f"{path} has {forbidden & node.keys()}"
    assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node:
        assert "additionalProperties" not in node


def test_every_field_has_a_description() -> None:
    missing = [
        f"{path}.{name}"
        for path, node in NODES
        for name, child in node.get("properties", {}).items()
        if not child.get("description")
    ]
    assert missing == []


def _unbounded(node: dict[str, Any]) -> bool:
    if node.get("type") == "array":
        return "maxItems" not in node
    if node.get("type") == "string":
        return not ({"maxLength", "enum"} & node.keys()) and node.get("format") != "date-time"
    return False


def test_every_string_and_list_in_the_spec_is_bounded_for_cel_cost() -> None:
    assert [path for path, node in NODES if ".spec" in path and _unbounded(node)] == []


def test_spec_has_no_floats() -> None:
    assert [path for path, node in NODES if node.get("type") == "number"] == []


def test_map_list_keys_are_required_in_their_items() -> None:
    map_lists = [
        (path, node) for path, node in NODES if node.get("x-kubernetes-list-type") == "map"
    ]
    assert map_lists, "expected list-type map fields (env, files, conditions)"
    for path, node in map_lists:
        keys = node["x-kubernetes-list-map-keys"]
        assert set(keys) <= set(node["items"].get("required", [])), path


def test_every_cel_rule_has_a_message() -> None:
    rules = [
        (path, rule)
        for kind, schema in _schemas()
        for path, node in [(kind, schema), *NODES]
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert rules
    assert all(rule.get("message") for _, rule in rules)


def test_crds_name_their_kinds_short_names_and_category() -> None:
    names = {
        crd["spec"]["names"]["kind"]: crd["spec"]["names"]
        for crd in (crdgen.function_crd(), crdgen.trigger_crd())
    }
    assert names["Function"]["shortNames"] == ["fn"]
    assert names["Trigger"]["shortNames"] == ["trig"]
    assert all(n["categories"] == ["kfn"] for n in names.values())


def test_ready_and_reason_columns_read_the_ready_condition() -> None:
    for crd in (crdgen.function_crd(), crdgen.trigger_crd()):
        columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
        assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
        assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'


def test_a_triggers_qualifier_is_a_wide_column_next_to_its_function() -> None:
    columns = crdgen.trigger_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in columns]
    assert names[:2] == ["Function", "Qualifier"]
    assert columns[1]["jsonPath"] == ".spec.functionRef.qualifier"
    assert columns[1]["priority"] == 1


def test_rendered_yaml_has_no_anchors() -> None:
    for name, text in crdgen.generate().items():
        assert "&id" not in text, name
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
