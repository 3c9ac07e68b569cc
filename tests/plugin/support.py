"""What the plugin tests share: the test files docs/testing.md shows, and running pytest on a project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
TEST_FILE_BLOCK = re.compile(r"<!-- test file: (\S+)[^>]*-->\s*```python\n(.*?)```", re.S)
TRUST_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
RUN_TIMEOUT = 300


def documented_test_files() -> dict[str, str]:
    """{file name: code} of every block docs/testing.md marks as a test file."""
    return dict(TEST_FILE_BLOCK.findall(DOCS.read_text()))


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in a child process, as a user runs it: the plugin comes from the package's entry point."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=RUN_TIMEOUT)
