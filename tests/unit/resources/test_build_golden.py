"""Golden files of the build: each ``build_golden/<case>/function.yaml`` builds the Job and
source ConfigMap beside it (``KFN_UPDATE_GOLDEN=1`` rewrites them; review the diff).

An optional ``inputs.yaml`` holds the content of a referenced ConfigMap (``configMap``). The
settings are fixed (:mod:`tests.unit.resources.buildsettings`), as the operator would read them
from the chart's values.
"""

from __future__ import annotations

import difflib
import os
import pathlib
from typing import Any

import pytest
import yaml

from kfn import resources
from kfn.api import function
from kfn.resources import build
from tests.unit.resources.buildsettings import SETTINGS

GOLDEN = pathlib.Path(__file__).resolve().parent / "build_golden"
CASES = sorted(path for path in GOLDEN.iterdir() if path.is_dir())
UPDATE = os.environ.get("KFN_UPDATE_GOLDEN") == "1"


def _load(path: pathlib.Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def _build(case: pathlib.Path) -> dict[str, Any]:
    fn = function.Function.model_validate(_load(case / "function.yaml"))
    inputs = _load(case / "inputs.yaml")
    if fn.spec.source.config_map_ref is not None:
        files: dict[str, bytes] | None = build.config_map_files(inputs["configMap"])
        hash_ = build.build_hash(fn, resources.source_hash(fn, files), SETTINGS)
    else:
        files = build.source_files(fn)
        hash_ = build.build_hash(fn, resources.source_hash(fn), SETTINGS)
    return {
        "job.yaml": build.build_job(fn, hash_, SETTINGS, files=files),
        "configmap.yaml": (
            build.build_source_config_map(fn, hash_, files, SETTINGS) if files is not None else None
        ),
    }


def test_there_are_golden_build_cases_for_each_kind_of_source() -> None:
    assert {c.name for c in CASES} >= {"inline-python", "archive-node", "configmap-python-binary"}


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.name)
def test_function_builds_its_golden_build_objects(case: pathlib.Path) -> None:
    for name, obj in _build(case).items():
        path = case / name
        if UPDATE:
            if obj is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(yaml.safe_dump(obj, sort_keys=False, width=100))
            continue
        if obj is None:
            assert not path.exists(), f"{case.name}: {name} should not be built"
            continue
        expected = path.read_text() if path.exists() else ""
        actual = yaml.safe_dump(obj, sort_keys=False, width=100)
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                f"{case.name}/{name} (golden)",
                f"{case.name}/{name} (built)",
            )
        )
        assert not diff, f"rerun with KFN_UPDATE_GOLDEN=1 if intended:\n{diff}"
