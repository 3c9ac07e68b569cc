"""The tests docs/testing.md shows (and the README copies) pass as a user would run them."""

from __future__ import annotations

import re

import pytest

from .support import DOCS, documented_test_files, run_pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.e2e


def test_the_documented_tests_pass(project):
    files = documented_test_files()
    assert "test_reboot.py" in files, "docs/testing.md lost its direct-method example"
    project.makepyfile(**{name.removesuffix(".py"): code for name, code in files.items()})
    result = run_pytest(project, "-v")
    result.assert_outcomes(passed=len(files))


def test_every_emulator_member_the_docs_name_exists():
    from emulator.testing import Emulator, EmulatorProcess
    text = DOCS.read_text()
    api_block = text[text.index("## Without pytest"):]
    named = set(re.findall(r"\bhub\.(\w+)", api_block))
    assert {"create_device", "invoke_method", "wait_for_telemetry"} <= named
    assert [name for name in sorted(named) if not hasattr(Emulator, name)] == []
    process_named = set(re.findall(r"`(\w+)\(\)`|`(\w+)`", api_block[api_block.index("EmulatorProcess"):]))
    process_named = {a or b for a, b in process_named} - {"EmulatorProcess", "start", "stop", "kill"}
    assert [name for name in sorted(process_named) if not hasattr(EmulatorProcess, name)] == []
