"""`iothub-demo --scale 1000`: the jobs story at the tutorial's scale, with the real fleet program,
passes with every device answering and acknowledging, and everything is stopped afterwards."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.e2e.conftest import PROJECT_ROOT
from tests.e2e.test_story_demo import DEMO_TIMEOUT, demo_env, processes_using, work_dir_of

pytestmark = pytest.mark.e2e

SCALE = 1000


def test_the_demo_tells_the_jobs_story_over_a_thousand_devices():
    done = subprocess.run([sys.executable, "-m", "demo", "--scale", str(SCALE), "--keep-logs"],
                          cwd=PROJECT_ROOT, env=demo_env(), capture_output=True, text=True,
                          timeout=DEMO_TIMEOUT + 120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "== Story 4/4: jobs at scale ==" in output
    assert f"per device: {SCALE:,} 200" in output and f"per device: {SCALE:,} completed" in output
    assert f"iothub-device --count {SCALE} --device-id-prefix bulk-" in output
    assert "passed  jobs at scale" in output and "Traceback" not in output
    work_dir = work_dir_of(output)
    assert not processes_using(work_dir), "the demo left processes running"
    try:
        fleet_log = (work_dir / "bulk.log").read_text()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    assert f"{SCALE:,} devices running; press Ctrl-C to stop" in fleet_log
    assert f"Summary: {SCALE:,} devices; methods answered {SCALE:,}, desired patches acknowledged {SCALE:,}" in fleet_log
