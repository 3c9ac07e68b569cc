"""The tests docs/testing.md shows (and the README copies) pass as a user would run them."""

from __future__ import annotations

import pytest

from .support import documented_test_files, run_pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.e2e


def test_the_documented_tests_pass(project):
    files = documented_test_files()
    assert "test_reboot.py" in files, "docs/testing.md lost its direct-method example"
    project.makepyfile(**{name.removesuffix(".py"): code for name, code in files.items()})
    result = run_pytest(project, "-v")
    result.assert_outcomes(passed=len(files))
