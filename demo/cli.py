"""`iothub-demo` (`make demo`, `python -m demo`): the whole project end to end on a throwaway local emulator.

Starts the emulator on a loopback address of its own (never a user's emulator) with its data and
discovery file in a temporary directory, starts the device listeners (myDeviceId, a fleet, a
DPS-provisioned sensor), tells the three tutorial stories with real `python -m service ...`
subprocesses, stops everything and exits 0 only when every story passed.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

from hubsettings import EmulatorInfo, parse_connection_string

from .processes import (ChildProcess, Emulator, ProcessFailed, child_env, device_command,
                             emulator_command, free_loopback_address, stop_all)
from .steps import LogFollower, StepFailed, Steps
from .stories import Cast, jobs_story, reboot_story, scale_story, sensor_story

EXIT_OK = 0
EXIT_STORY_FAILED = 1
EXIT_USAGE = 2
EXIT_SETUP_FAILED = 3
EXIT_INTERRUPTED = 130
START_TIMEOUT = 60.0  # emulator or device listener start-up (generous for a loaded 2-core machine)
EMULATOR_ADDRESS_IN_USE = 3  # the emulator's own exit code when its address/port is taken
DEMO_EPILOG = ("\b\nExit codes:\n"
               f"  {EXIT_OK}    every story passed\n"
               f"  {EXIT_STORY_FAILED}    a story failed (the failing step is printed; logs are kept), or a child did not\n"
               "       stop cleanly, or an unexpected error\n"
               f"  {EXIT_USAGE}    bad option\n"
               f"  {EXIT_SETUP_FAILED}    the emulator or a device listener did not start\n"
               f"  {EXIT_INTERRUPTED}  interrupted (Ctrl-C or SIGTERM); everything was stopped")

DEVICE_OPTIONS = ("--reboot-delay", "2", "--diagnostics-delay", "2", "--connect-timeout", "30")


def scale_start_timeout(devices: int) -> float:
    """A big fleet provisions every device through DPS first: allow for that on a loaded machine."""
    return START_TIMEOUT + devices / 50


class Interrupted(Exception):
    """SIGTERM, turned into an exception so that the clean-up below runs."""


@dataclass
class Outcome:
    name: str
    passed: bool
    summary: str
    seconds: float


@dataclass
class DemoRun:
    work_dir: Path
    fleet_size: int
    echo: Callable[..., None] = click.echo
    children: list[ChildProcess] = field(default_factory=list)
    emulator: Emulator | None = None

    @property
    def discovery_file(self) -> Path:
        return self.work_dir / "discovery.json"

    # -- setup -------------------------------------------------------------------------------------
    def start_emulator(self, address: str | None) -> EmulatorInfo:
        """On `address`, or on a free 127.0.0.X (another one if that is taken meanwhile)."""
        for attempt in range(3):
            chosen = address or free_loopback_address()
            child = ChildProcess(f"emulator-{attempt + 1}" if attempt else "emulator",
                                 emulator_command(chosen, self.work_dir / "data", self.discovery_file),
                                 self.work_dir / "emulator.log", child_env(self.discovery_file), self.work_dir)
            self.echo(f"$ iothub-emulator --address {chosen} --data-dir {self.work_dir / 'data'} "
                      f"--discovery-file {self.discovery_file}")
            self.children.append(child.start())
            emulator = Emulator(child, self.discovery_file)
            try:
                info = emulator.wait_ready(START_TIMEOUT)
            except ProcessFailed:
                if address is None and child.process.poll() == EMULATOR_ADDRESS_IN_USE and attempt < 2:
                    continue  # someone took the address between our check and its start: pick another
                raise
            self.emulator = emulator
            self.echo(f"    emulator ready: devices on {info.mqtt_address}:{info.mqtt_port} (MQTT/TLS), "
                      f"service REST on {info.rest_address}:{info.rest_port}, host name {info.host_name}")
            return info
        raise ProcessFailed("the emulator could not find a free address")

    def start_device(self, name: str, *options: str) -> ChildProcess:
        self.echo(f"$ iothub-device {' '.join(options)}")
        child = ChildProcess(name, device_command(*options), self.work_dir / f"{name}.log",
                             child_env(self.discovery_file), self.work_dir)
        self.children.append(child.start())
        return child

    def wait_devices_ready(self, devices: list[ChildProcess], timeout: float = START_TIMEOUT) -> None:
        for child in devices:
            child.wait_for_line("press Ctrl-C to stop", timeout)
            first = child.output().splitlines()[0]
            if str(self.discovery_file) not in first:  # it must have found *our* emulator
                raise ProcessFailed(f"{child.name} does not use the demo's emulator: {first}")
            self.echo(f"    {child.name} ready: {first}")

    def stop(self) -> dict[str, int | None]:
        """Devices first (they disconnect cleanly), then the emulator."""
        devices = [c for c in self.children if not c.name.startswith("emulator")]
        codes = stop_all(devices)
        codes.update(stop_all([c for c in self.children if c.name.startswith("emulator")]))
        return codes


def run_demo(work_dir: Path, fleet_size: int, address: str | None,
             echo: Callable[..., None] = click.echo, scale: int = 0) -> int:
    """Set up, tell the stories, stop everything; returns the exit code."""
    demo = DemoRun(work_dir, fleet_size, echo)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    code = EXIT_OK
    try:
        echo(click.style("Starting a throwaway emulator and the device listeners", bold=True)
             + f" (logs in {work_dir})")
        info = demo.start_emulator(address)
        cast = Cast(device="myDeviceId",
                    fleet=tuple(f"door-{n:03d}" for n in range(1, fleet_size + 1)),
                    chosen=tuple(f"door-{n:03d}" for n in range(1, fleet_size)),
                    sensor="sensor-01", fleet_prefix="door-", scale=scale)
        devices = [
            demo.start_device("myDeviceId", "--no-telemetry", *DEVICE_OPTIONS),
            demo.start_device("fleet", "--count", str(fleet_size), "--device-id-prefix", "door-",
                              "--no-telemetry", *DEVICE_OPTIONS),
            demo.start_device("sensor-01", "--device-id", cast.sensor, "--telemetry-interval", "1",
                              *DEVICE_OPTIONS),
        ]
        bulk = [demo.start_device("bulk", "--count", str(scale), "--device-id-prefix", cast.scale_prefix,
                                  "--no-telemetry", *DEVICE_OPTIONS)] if scale else []
        demo.wait_devices_ready(devices)
        demo.wait_devices_ready(bulk, scale_start_timeout(scale))
        echo(f"    ready in {time.monotonic() - started:.1f} s")
        steps = Steps(env=child_env(demo.discovery_file), cwd=work_dir, devices=LogFollower(devices), echo=echo,
                      expected_hub=f"Using IoT hub {service_host_name(info)} ")
        stories = [("reboot", lambda: reboot_story(steps, cast)),
                   ("jobs", lambda: jobs_story(steps, cast)),
                   ("IoT Central sensor", lambda: sensor_story(steps, cast))]
        if scale:
            stories.append(("jobs at scale", lambda: scale_story(steps, cast)))
        for number, (name, tell) in enumerate(stories, 1):
            echo()
            echo(click.style(f"== Story {number}/{len(stories)}: {name} ==", bold=True))
            outcomes.append(_tell(name, tell, steps, echo))
        if not all(o.passed for o in outcomes):
            code = EXIT_STORY_FAILED
    except ProcessFailed as e:
        echo(click.style(f"Setup failed: {e}", fg="red"), err=True)
        code = EXIT_SETUP_FAILED
    except (KeyboardInterrupt, Interrupted):
        echo("\nInterrupted: stopping everything...", err=True)
        code = EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - a bug in the demo: one line, and still stop everything
        echo(click.style(f"Error: unexpected {type(e).__name__}: {e} (please report this)", fg="red"), err=True)
        code = EXIT_STORY_FAILED
    finally:
        exit_codes = demo.stop()
    unclean = {name: c for name, c in exit_codes.items() if c not in (0, None)}
    if unclean and code == EXIT_OK:
        echo(click.style(f"Not stopped cleanly: {unclean}", fg="red"), err=True)
        code = EXIT_STORY_FAILED
    _summary(outcomes, time.monotonic() - started, code, echo)
    return code


def _tell(name: str, tell: Callable[[], str], steps: Steps, echo: Callable[..., None]) -> Outcome:
    started = time.monotonic()
    try:
        summary = tell()
    except StepFailed as e:
        steps.device_lines()
        echo(click.style(f"  FAILED: {e}", fg="red"))
        return Outcome(name, False, str(e), time.monotonic() - started)
    seconds = time.monotonic() - started
    steps.ok(f"{summary} ({seconds:.1f} s)")
    return Outcome(name, True, summary, seconds)


def _summary(outcomes: list[Outcome], seconds: float, code: int, echo: Callable[..., None]) -> None:
    echo()
    for outcome in outcomes:
        mark = click.style("passed", fg="green") if outcome.passed else click.style("FAILED", fg="red")
        echo(f"  {mark}  {outcome.name} ({outcome.seconds:.1f} s)")
    if code == EXIT_OK:
        echo(click.style(f"Demo passed: {len(outcomes)} stories in {seconds:.1f} s; everything stopped.",
                         fg="green", bold=True))
    else:
        echo(click.style(f"Demo did not pass (exit code {code}) after {seconds:.1f} s; everything stopped.",
                         fg="red", bold=True))


def service_host_name(info: EmulatorInfo) -> str:
    """HostName of the emulator's service connection string: no port on 443, as on Azure."""
    return parse_connection_string(info.service_connection_string).host_name


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _loopback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.startswith("127."):
        raise click.BadParameter("must be a loopback address 127.x.y.z")
    return value


@click.command("iothub-demo", epilog=DEMO_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--fleet-size", type=click.IntRange(2, 50), default=4, show_default=True,
              help="Simulated devices in the jobs story's fleet (a twin query picks all but one).")
@click.option("--scale", type=click.IntRange(0, 10000), default=0, metavar="N",
              help="Add a fourth story, jobs at scale: N simulated devices (1000 is a good start) from one "
                   "`iothub-device --count N`, a lockDoor job and a twin-update job over all of them, "
                   "per-device results summed up. Default: no such story.")
@click.option("--address", metavar="127.0.0.X", callback=_loopback,
              help="Loopback address for the demo's emulator. Default: a free random 127.0.0.X, so it "
                   "never meets an emulator you run yourself on 127.0.0.1.")
@click.option("--keep-logs", is_flag=True,
              help="Keep the temporary directory with the logs and data (kept anyway when a story fails).")
def demo(fleet_size: int, scale: int, address: str | None, keep_logs: bool) -> None:
    """Run the three tutorial stories end to end on a throwaway local emulator (four with --scale).

    Starts the emulator and the device listeners as subprocesses, runs every story with real
    `python -m service ...` commands (the same program as iothub-service), shows both sides, stops
    everything and exits 0 only when every story passed. Takes no hub settings: it never touches a
    real IoT hub or an emulator you are running.
    """
    work_dir = Path(tempfile.mkdtemp(prefix="iothub-demo-"))
    with _sigterm_interrupts():
        code = run_demo(work_dir, fleet_size, address, scale=scale)
    if code in (EXIT_OK, EXIT_INTERRUPTED) and not keep_logs:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        click.echo(f"Logs and data kept in {work_dir}", err=True)
    raise SystemExit(code)


def main() -> None:
    """Console-script entry point."""
    demo(prog_name="iothub-demo")
