"""Event lines: time, device id, event; JSON lines on request; secrets never printed."""

import io
import json
import re

from device.eventlog import EventLog

from .fakes import T0

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="


def test_text_line_is_time_device_event():
    out = io.StringIO()
    EventLog(out, now=lambda: T0).event("myDeviceId", "method rebootDevice -> 200")
    assert re.fullmatch(r"\d\d:\d\d:\d\d myDeviceId method rebootDevice -> 200\n", out.getvalue())


def test_json_lines_carry_the_data():
    out = io.StringIO()
    EventLog(out, json_lines=True, now=lambda: T0).event("d1", "method lockDoor -> 200", status=200)
    record = json.loads(out.getvalue())
    assert record == {"time": "2026-11-22T12:00:00.000+00:00", "device": "d1",
                      "message": "method lockDoor -> 200", "status": 200}


def test_keys_are_masked_in_every_line():
    out = io.StringIO()
    log = EventLog(out, now=lambda: T0)
    log.event("d1", f"error with HostName=h;DeviceId=d1;SharedAccessKey={KEY}")
    log.info(f"sig={KEY}")
    assert KEY not in out.getvalue() and "8cc0…(44 chars)" in out.getvalue()
