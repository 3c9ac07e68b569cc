"""Runs the README's marked commands exactly as written and checks their output.

A fenced block preceded by an HTML comment `<!-- test: ROLE ... -->` is run; roles:
  file NAME                   the block is written to NAME in the working directory
  run                         `$ command` lines, each followed by its expected output (stdout and stderr)
                              and, unless it exited 0, a last line `(exit N)`
  background NAME ready=TEXT [ignore=TEXT] [stdout]
                              one `$ command` started in the background; the test goes on once `ready` has
                              been printed; its expected output (stdout only with `stdout`; lines holding the
                              `ignore` text, printed on a timer, left out) is checked at `stop`; a line
                              starting with `^C` marks where it was interrupted
  stop NAME                   (no block) Ctrl-C (SIGINT) the background command NAME and check its output
Expected output may use `[...]` for any number of lines. Clock times, dates, durations, ids, etags and
fresh keys differ from run to run and are compared by shape. Usage: readme_runner.py README [--record];
HOME, PATH and the working directory come from the caller: test_readme.py, which also re-captures
(`python tests/newcomer/test_readme.py README.md`). Exit 0 when every block matched.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SHOWN_HOME = "/tmp/readmehome"  # the HOME the README's transcripts were captured with
READY_TIMEOUT = 60.0
COMMAND_TIMEOUT = 120.0
MARKER = re.compile(r"^<!-- test: (\w+)(.*?)-->\s*$")
_SHAPES = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), "<datetime>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)? s\b"), "<n> s"),
    (re.compile(r"etag [A-Za-z0-9+/=\"]+"), "etag <etag>"),
    (re.compile(r"pid \d+"), "pid <pid>"),
    (re.compile(r"attempt \d+"), "attempt <n>"),  # how many retries fit in a timeout
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d+(\.\d+)?s\b"), "<n>s"),
    (re.compile(r"[A-Za-z0-9+/]{4}…\(44 chars\)"), "<masked key>"),  # fresh devices get fresh keys
    (re.compile(r"─+"), "─"),  # table widths follow the values' lengths
    (re.compile(r" {2,}"), " "),
]


@dataclass
class Block:
    role: str
    args: list[str]
    text: str
    line: int


@dataclass
class Background:
    name: str
    process: subprocess.Popen
    log: Path
    expected: list[str]
    line: int
    ignore: str | None = None


@dataclass
class Runner:
    record: bool
    home: str = field(default_factory=lambda: os.environ["HOME"])
    failures: list[str] = field(default_factory=list)
    running: dict[str, Background] = field(default_factory=dict)

    def shown(self, text: str) -> str:
        return text.replace(self.home, SHOWN_HOME)

    def check(self, what: str, line: int, expected: list[str], actual: str) -> None:
        actual = self.shown(actual)
        if self.record:
            print(f"---- README line {line}: {what}\n{actual.rstrip()}\n", flush=True)
        if not matches(expected, actual):
            self.failures.append(f"README line {line}: {what}: output differs\n--- expected\n"
                                 + "\n".join(expected) + "\n--- actual\n" + actual.rstrip())

    def file(self, block: Block) -> None:
        Path(block.args[0]).write_text(block.text)

    def run(self, block: Block) -> None:
        for command, expected in split_commands(block.text):
            code = 0
            if expected and (m := re.fullmatch(r"\(exit (\d+)\)", expected[-1].strip())):
                code, expected = int(m.group(1)), expected[:-1]
            done = subprocess.run(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
            self.check(f"$ {command}", block.line, expected, done.stdout)
            if done.returncode != code:
                self.failures.append(f"README line {block.line}: $ {command}: exit {done.returncode}, "
                                     f"expected {code}")

    def background(self, block: Block) -> None:
        name = block.args[0]
        options = dict(a.split("=", 1) for a in shlex.split(" ".join(block.args[1:])) if "=" in a)
        stdout_only = "stdout" in block.args[1:]
        (command, expected), = split_commands(block.text)
        log = Path(f".{name}.out")
        with open(log, "w") as out:
            process = subprocess.Popen(["bash", "-c", f"exec {command}"], stdout=out,
                                       stderr=open(f".{name}.err", "w") if stdout_only else subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, text=True)
        self.running[name] = Background(name, process, log, expected, block.line, options.get("ignore"))
        deadline = time.monotonic() + READY_TIMEOUT
        while options["ready"] not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                self.failures.append(f"README line {block.line}: $ {command}: never printed "
                                     f"{options['ready']!r}:\n{self.shown(log.read_text())}")
                return
            time.sleep(0.1)

    def stop(self, name: str) -> None:
        job = self.running.pop(name)
        job.process.send_signal(signal.SIGINT)
        try:
            job.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            job.process.kill()
            self.failures.append(f"README line {job.line}: {name} did not stop on Ctrl-C")
        output = job.log.read_text()
        if job.ignore:
            output = "".join(line for line in output.splitlines(keepends=True) if job.ignore not in line)
        self.check(f"{name} (background)", job.line, job.expected, output)

    def close(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)


def split_commands(text: str) -> list[tuple[str, list[str]]]:
    """`$ command` lines, each with the output lines that follow it."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def normalise(line: str) -> str:
    if line.startswith("^C"):
        line = line[2:]
    for pattern, shape in _SHAPES:
        line = pattern.sub(shape, line)
    return line.strip()


def matches(expected: list[str], actual: str) -> bool:
    """The actual output, line by line, against the expected lines, where `[...]` stands for any lines."""
    parts = []
    for line in expected:
        parts.append(r"(?:.*\n)*?" if line.strip() == "[...]" else re.escape(normalise(line)) + r"\n")
    got = "".join(normalise(line) + "\n" for line in actual.rstrip("\n").splitlines()) if actual.strip() else ""
    want = "".join(parts)
    return re.fullmatch(want, got) is not None


def blocks(readme: str) -> list[Block]:
    lines = readme.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if m:
            role, args = m.group(1), m.group(2).split()
            if role == "stop":
                found.append(Block(role, args, "", i + 1))
            else:
                j = i + 1
                while not lines[j].startswith("```"):
                    j += 1
                end = j + 1
                while not lines[end].startswith("```"):
                    end += 1
                found.append(Block(role, args, "\n".join(lines[j + 1:end]) + "\n", j + 1))
                i = end
        i += 1
    return found


def main(argv: list[str]) -> int:
    readme = Path(argv[1]).read_text()
    runner = Runner(record="--record" in argv)
    try:
        for block in blocks(readme):
            if block.role == "file":
                runner.file(block)
            elif block.role == "run":
                runner.run(block)
            elif block.role == "background":
                runner.background(block)
            elif block.role == "stop":
                runner.stop(block.args[0])
            else:
                runner.failures.append(f"README line {block.line}: unknown test role {block.role!r}")
    finally:
        runner.close()
    for failure in runner.failures:
        print(failure, file=sys.stderr, end="\n\n")
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
