"""The chart's values, its schema, its lint, its CRDs and the install docs made from it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import config
from tests.unit.chart import chart

# --- lint and the values schema ---------------------------------------------------------------


def test_helm_lint_strict_passes(helm: pathlib.Path) -> None:
    result = chart.run_helm(
        helm, "lint", "--strict", str(chart.CHART), "--kube-version", config.KUBERNETES_VERSION
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


SCHEMA_REFUSALS = [
    pytest.param("operator.replicas=2", ("/operator", "'replicas' not allowed"),
                 id="an unknown key is refused naming it"),
    pytest.param("imagePullPolicy=Always", ("'imagePullPolicy' not allowed",),
                 id="an unknown top-level key is refused naming it"),
    pytest.param("rbac.create=yes", ("/rbac/create", "boolean"),
                 id="a wrong type is refused naming the key and the type"),
    pytest.param("image.digest=latest", ("/image/digest",), id="a malformed digest is refused"),
    pytest.param("operator.logLevel=verbose", ("/operator/logLevel",),
                 id="an unknown log level is refused"),
    pytest.param("builder.pypiIndexUrl=pypi.org/simple", ("/builder/pypiIndexUrl",),
                 id="a package index that is not a URL is refused"),
    pytest.param("builder.archives.maxFiles=0", ("/builder/archives/maxFiles",),
                 id="an archive bound of nothing is refused"),
    pytest.param("builder.archives.allowedCIDRs={metadata.google.internal}",
                 ("/builder/archives/allowedCIDRs/0",), id="an allowed network that is a name"),
    pytest.param("builder.resources.limits.gpu=1", ("'gpu' not allowed",),
                 id="a build resource that does not exist is refused"),
    pytest.param("activator.replicas=0", ("/activator/replicas",),
                 id="a release without an activator is refused"),
    pytest.param("activator.port=8080", ("'port' not allowed",),
                 id="an activator setting that does not exist is refused"),
    pytest.param("autoscaler.logLevel=loud", ("/autoscaler/logLevel",),
                 id="an unknown autoscaler log level is refused"),
    pytest.param("cron.replicas=0", ("/cron/replicas",),
                 id="a release without a cron worker is refused"),
    pytest.param("cron.invokeUrl=not a url", ("/cron/invokeUrl",),
                 id="an activator URL that is not a URL is refused"),
    pytest.param("cron.port=8080", ("'port' not allowed",),
                 id="a cron worker setting that does not exist is refused"),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "expected"), SCHEMA_REFUSALS)
def test_the_schema_refuses_a_bad_value_saying_where(
    helm: pathlib.Path, setting: str, expected: tuple[str, ...]
) -> None:
    message = chart.render_error(helm, setting)
    for fragment in expected:
        assert fragment in message


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
