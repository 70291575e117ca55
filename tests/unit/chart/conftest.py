"""The helm the chart tests render with (and the promtool that checks the chart's alerts and
dashboard): the versions the cluster tool pins, no cluster needed.

``make tools`` (a step of ``make test-unit``) builds them ahead of time; when one is not in the
cache yet (``$KFN_CACHE``, ``~/.cache/kfn`` by default) its fixture builds it the same way,
from the pinned Go module, once per machine, so ``pytest tests/unit`` works on a fresh clone
too. A helm elsewhere on ``PATH`` is not used: messages and rendering differ between versions.
"""

from __future__ import annotations

import pathlib

import pytest

from kfncluster import build, config


@pytest.fixture(scope="session")
def helm() -> pathlib.Path:
    return build.ensure_tools(config.Paths(), ("helm",))["helm"]


@pytest.fixture(scope="session")
def promtool() -> pathlib.Path:
    return build.ensure_tools(config.Paths(), ("promtool",))["promtool"]
