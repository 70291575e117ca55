"""The chart's values, its schema, its lint, its CRDs and the install docs made from it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from kfncluster import config
from tests.unit.chart import chart

# --- lint and the values schema ---------------------------------------------------------------


def test_helm_lint_strict_passes(helm: pathlib.Path) -> None:
    result = chart.run_helm(
        helm, "lint", "--strict", str(chart.CHART), "--kube-version", config.KUBERNETES_VERSION
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_the_schema_rejects_an_unknown_key_naming_it(helm: pathlib.Path) -> None:
    message = chart.render_error(helm, "operator.replicas=2")
    assert "/operator" in message
    assert "'replicas' not allowed" in message


def test_the_schema_rejects_an_unknown_top_level_key(helm: pathlib.Path) -> None:
    message = chart.render_error(helm, "imagePullPolicy=Always")
    assert "'imagePullPolicy' not allowed" in message


def test_the_schema_rejects_a_wrong_type_naming_the_key_and_the_type(helm: pathlib.Path) -> None:
    message = chart.render_error(helm, "rbac.create=yes")
    assert "/rbac/create" in message
    assert "boolean" in message


def test_the_schema_rejects_a_malformed_digest(helm: pathlib.Path) -> None:
    message = chart.render_error(helm, "image.digest=latest")
    assert "/image/digest" in message


def test_the_schema_rejects_an_unknown_log_level(helm: pathlib.Path) -> None:
    message = chart.render_error(helm, "operator.logLevel=verbose")
    assert "/operator/logLevel" in message


def _object_schemas(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            yield path, schema
        for key, value in schema.items():
            yield from _object_schemas(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _object_schemas(value, f"{path}/{index}")


def test_every_object_in_the_schema_closes_its_keys_or_types_its_map_values() -> None:
    schema = json.loads((chart.CHART / "values.schema.json").read_text())
    objects = dict(_object_schemas(schema))
    # Helm hands a parent chart's globals to every subchart; kfn must not reject them.
    objects.pop("/properties/global")
    for path, obj in objects.items():
        closed = obj.get("additionalProperties")
        assert closed is False or isinstance(closed, dict), path


def test_every_value_is_described_in_the_schema() -> None:
    schema = json.loads((chart.CHART / "values.schema.json").read_text())

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        for key, value in values.items():
            assert key in node["properties"], f"{path}{key} is not in the schema"
            child = node["properties"][key]
            if isinstance(value, dict) and "properties" in child:
                walk(value, child, f"{path}{key}.")

    walk(chart.DEFAULTS, schema, "")


# --- CRDs and docs ----------------------------------------------------------------------------


def test_the_install_docs_list_every_value_and_every_rbac_rule_as_the_chart_has_them(
    helm: pathlib.Path,
) -> None:
    result = subprocess.run(
        [sys.executable, str(chart.REPO / "hack" / "chartdocs.py"), f"--helm={helm}", "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_chart_ships_the_generated_crds_unchanged() -> None:
    generated = {p.name: p.read_bytes() for p in (chart.REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (chart.CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert shipped == generated, "charts/kfn/crds differs from crds/; run `make crds`"
