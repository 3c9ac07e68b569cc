"""The README's (and docs/walkthrough.md's) quick start and own-code commands, run exactly as written
and checked against the output the README shows (see readme_runner.py for the markers).

They run as a newcomer's would: a fresh HOME, no settings, the virtualenv's programs on PATH, and the
emulators on their default addresses (127.0.0.1 and 127.0.0.91, ports 443/8883/5671). So that those never
meet an emulator or a test already running on this machine, everything runs in a network namespace of its
own (Linux `unshare`), where loopback is private.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("readme_runner.py")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _namespace_prefix() -> list[str]:
    """A command prefix that runs in a private network namespace with loopback up, or skip saying why."""
    unshare = shutil.which("unshare")
    ip = shutil.which("ip") or "/usr/sbin/ip"
    if not unshare or not Path(ip).exists():
        pytest.skip("needs Linux `unshare` and `ip` (util-linux, iproute2) to give the README's emulators a "
                    "loopback of their own")
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    probe = subprocess.run([unshare, *user, "--net", ip, "link", "set", "lo", "up"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here ({probe.stderr.strip()}): the README's emulators "
                    "would collide with whatever listens on 127.0.0.1")
    return [unshare, *user, "--net", "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh"]


def run_readme(readme: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IOTHUB_", "PROVISIONING_", "SSL_CERT", "REQUESTS_CA", "NODE_EXTRA_CA",
                                "PYTEST_"))}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
               PYTHONDONTWRITEBYTECODE="1")
    command = [*_namespace_prefix(), sys.executable, str(RUNNER), str(readme.resolve()), *extra]
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=540)


@pytest.mark.parametrize("document", ["README.md", "docs/walkthrough.md"])
def test_documented_commands_run_as_written_and_print_what_is_shown(document, tmp_path):
    result = run_readme(ROOT / document, tmp_path)
    assert result.returncode == 0, result.stderr[-20000:]


def test_the_runner_notices_a_wrong_transcript(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text('<!-- test: run -->\n```console\n$ echo hello\nbye\n$ false\n```\n')
    result = run_readme(readme, tmp_path)
    assert result.returncode == 1
    assert "$ echo hello: output differs" in result.stderr and "$ false: exit 1, expected 0" in result.stderr


def test_make_test_halves_cover_every_test_directory():
    makefile = (ROOT / "Makefile").read_text()
    assert "pytest -q tests/unit " in makefile and "pytest -q tests --ignore=tests/unit " in makefile


if __name__ == "__main__":
    # Re-capture after a change to what the programs print:
    #   .venv/bin/python tests/newcomer/test_readme.py README.md   (or docs/walkthrough.md)
    # prints every marked block's actual output (HOME shown as /tmp/readmehome) and the differences.
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        done = run_readme(Path(sys.argv[1]), Path(scratch), "--record")
    print(done.stdout + done.stderr)
    sys.exit(done.returncode)
