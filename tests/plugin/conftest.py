"""The plugin's tests run pytest on throwaway projects (pytester), in child processes."""

from __future__ import annotations

import pytest

from .support import TRUST_VARIABLES


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A temporary project; the machine's own trust variables are not passed down to it."""
    for name in (*TRUST_VARIABLES, "IOTHUB_TEST_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)
    return pytester
