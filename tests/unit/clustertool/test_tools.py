"""The tools the unit tests need come from the cluster tool's pinned builds, without a cluster."""

from __future__ import annotations

import pathlib

import pytest

from kfncluster import build, config


def _paths(tmp_path: pathlib.Path) -> config.Paths:
    return config.Paths(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")


def test_every_tool_the_unit_tests_need_is_a_pinned_build_linked_for_path() -> None:
    built = {name for component in build.COMPONENTS for name in component.outputs}
    assert set(build.UNIT_TEST_TOOLS) <= built
    assert set(build.UNIT_TEST_TOOLS) <= set(build.TOOLS)


def test_a_tool_built_before_is_linked_without_building_again(tmp_path: pathlib.Path) -> None:
    paths = _paths(tmp_path)
    (helm,) = (c for c in build.COMPONENTS if c.name == "helm")
    binary = build.output_dir(paths, helm) / "helm"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    found = build.ensure_tools(paths, ("helm",))
    assert found == {"helm": binary}
    assert (paths.bin / "helm").resolve() == binary.resolve()
    assert not (paths.cache / "logs").exists()
    assert not paths.state.exists()


def test_a_tool_no_component_builds_is_refused_by_name(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="no component builds docker"):
        build.ensure_tools(_paths(tmp_path), ("helm", "docker"))
