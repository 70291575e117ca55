"""The API server's TokenReview on loopback (:mod:`tests.unit.authn.tokenreviews`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.authn import tokenreviews


@pytest.fixture
def token_reviews(monkeypatch: pytest.MonkeyPatch) -> Iterator[tokenreviews.TokenReviewServer]:
    yield from tokenreviews.serving(monkeypatch)
