"""A test parametrized with a test-only ``provider`` (tests/connectors/twelfth) runs with that provider
registered, and unregistered after it: no other test sees it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connectors.kit import available


@pytest.fixture(autouse=True)
def _test_provider_registered(request: pytest.FixtureRequest) -> Iterator[None]:
    callspec = getattr(request.node, "callspec", None)
    provider = callspec.params.get("provider") if callspec is not None else None
    if not isinstance(provider, str):
        yield
        return
    with available(provider):
        yield
