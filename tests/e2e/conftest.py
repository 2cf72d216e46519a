"""End-to-end tests run an internal deployment: anonymous readers see official-use data.

Writes still need a token (``bearer`` in tests/conftest.py); the demo workflows are
offered over HTTP. The trust boundary itself is tested in tests/security.
"""

from __future__ import annotations

import pytest

from geoetl.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, as an internal deployment configures them."""
    return settings.model_copy(update={"anonymous_clearance": "ouo", "demo_workflows": True})
