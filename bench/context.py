"""What every benchmark receives: the sizes to run, a global time budget, where results and logs go."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .report import Results


class BudgetExhausted(Exception):
    """The global time budget is spent: the remaining measurements are skipped, not run late."""


class Budget:
    """A deadline shared by the whole run; each step also has its own cap."""

    def __init__(self, total_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.total_seconds = total_seconds
        self._clock = clock
        self._deadline = clock() + total_seconds

    def remaining(self) -> float:
        return max(0.0, self._deadline - self._clock())

    def cap(self, seconds: float) -> float:
        """`seconds`, shortened to what is left of the budget."""
        return min(seconds, self.remaining())

    def require(self, seconds: float, what: str) -> None:
        """Raise BudgetExhausted unless at least `seconds` remain for `what`."""
        if self.remaining() < seconds:
            raise BudgetExhausted(f"{what}: skipped, less than {seconds:.0f} s of the time budget left")


@dataclass(frozen=True)
class Sizes:
    """Counts per benchmark; `quick()` is the smaller run (CI, a first look)."""

    roundtrip_calls: int = 1000
    roundtrip_warmup: int = 20
    fanout_devices: tuple[int, ...] = (1000, 10000)
    capacity_devices: int = 10000
    #: Connections for the row "held up to the file-descriptor limit": None = as many as one process may
    #: open, less FD_RESERVE (bench_capacity.fd_limit_connections); 0 skips the row.
    fd_limit_devices: int | None = None
    sustained_seconds: float = 10.0
    sustained_concurrency: int = 32
    cli_help_runs: int = 10
    cli_invoke_runs: int = 5
    job_time_limit_s: float = 120.0  # a job still running after this is reported as not completed
    query_devices: int = 100_000
    query_rounds: int = 50

    @classmethod
    def quick(cls) -> Sizes:
        return cls(roundtrip_calls=200, roundtrip_warmup=10, fanout_devices=(200, 1000), capacity_devices=1000, fd_limit_devices=0,
                   sustained_seconds=3.0, sustained_concurrency=16, cli_help_runs=5, cli_invoke_runs=2,
                   job_time_limit_s=60.0, query_devices=10_000, query_rounds=20)


@dataclass
class BenchContext:
    results: Results
    budget: Budget
    sizes: Sizes
    log_dir: Path
    used_addresses: set[str] = field(default_factory=set)
    progress: Callable[[str], None] = print
