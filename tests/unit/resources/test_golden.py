"""Golden files: each ``golden/<case>/function.yaml`` must build exactly the YAML beside it.

Run with ``KFN_UPDATE_GOLDEN=1`` to rewrite the expected files after an intended change, then
review the diff. A missing ``serviceaccount.yaml`` means no ServiceAccount is built. An optional
``inputs.yaml`` holds what the operator would pass besides the Function (``initialReplicas``,
``image``, and ``platform``: the chart's ``credentialsSecret``, ``pullSecrets`` and
``functions`` scheduling); by default the image is the prebuilt one or a fixed digest reference.
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
from kfn.resources import platform

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
CASES = sorted(path for path in GOLDEN.iterdir() if path.is_dir())
UPDATE = os.environ.get("KFN_UPDATE_GOLDEN") == "1"
BUILT_IMAGE = "registry.kfn.local/{namespace}/{name}@sha256:" + "0" * 64


def _load(path: pathlib.Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def _render(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, width=100)


def _build(case: pathlib.Path) -> dict[str, Any]:
    fn = function.Function.model_validate(_load(case / "function.yaml"))
    inputs = _load(case / "inputs.yaml")
    image = (
        inputs.get("image")
        or fn.spec.source.image
        or BUILT_IMAGE.format(namespace=fn.metadata.namespace, name=fn.metadata.name)
    )
    given = inputs.get("platform") or {}
    settings = platform.Platform(
        credentials_secret=given.get("credentialsSecret"),
        pull_secrets=tuple(given.get("pullSecrets") or ()),
        functions=platform.Placement.parse(given.get("functions")),
    )
    deployment = resources.build_deployment(
        fn,
        image=image,
        source_hash=resources.source_hash(fn),
        initial_replicas=inputs.get("initialReplicas"),
        platform=settings,
    )
    return {
        "deployment.yaml": deployment,
        "service.yaml": resources.build_service(fn),
        "serviceaccount.yaml": resources.build_service_account(fn),
    }


def test_there_are_enough_golden_cases() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.name)
def test_function_builds_its_golden_objects(case: pathlib.Path) -> None:
    for name, obj in _build(case).items():
        path = case / name
        if UPDATE:
            if obj is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(_render(obj))
            continue
        if obj is None:
            assert not path.exists(), f"{case.name}: {name} should not be built"
            continue
        expected = path.read_text() if path.exists() else ""
        actual = _render(obj)
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                f"{case.name}/{name} (golden)",
                f"{case.name}/{name} (built)",
            )
        )
        assert not diff, f"rerun with KFN_UPDATE_GOLDEN=1 if intended:\n{diff}"
