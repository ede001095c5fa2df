"""Fixtures for the routing tests."""

from __future__ import annotations

import pytest
from routing_helpers import Decide, decide


@pytest.fixture
def matches() -> Decide:
    """``matches(pattern, event)``: the answer of every entry point, which must all agree."""
    return decide
