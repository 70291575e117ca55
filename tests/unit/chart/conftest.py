"""The helm the chart tests render with: the version the cluster tool pins, no cluster needed.

``make tools`` (a step of ``make test-unit``) builds it ahead of time; when it is not in the
cache yet (``$KFN_CACHE``, ``~/.cache/kfn`` by default) the fixture builds it the same way,
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
