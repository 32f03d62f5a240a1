"""CPU time each process of the run spends, read from /proc: where the cores go per transfer.

Latency on a 2-core machine shared by five Python services, a JVM and PostgreSQL says little
about which of them to make cheaper; CPU seconds per process over a steady window do.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_processes() -> dict[int, float]:
    """CPU seconds of every PostgreSQL server process, by PID."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = cpu_seconds(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU seconds per named process between `start()` and `stop()`."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid}
        self._before: dict[str, float] = {}
        self._postgres_before: dict[int, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._postgres_before = postgres_processes()

    def stop(self) -> dict[str, float]:
        used = {
            name: cpu_seconds(pid) - self._before.get(name, 0.0) for name, pid in self._pids.items()
        }
        # Per PID: a backend that exits inside the window takes its time with it (so this is
        # a floor), but never makes the sum go backwards; one started inside counts from 0.
        used["postgres"] = sum(
            seconds - self._postgres_before.get(pid, 0.0)
            for pid, seconds in postgres_processes().items()
        )
        return used


async def wait_until_quiet(
    pids: Mapping[str, int | None], *, cores: float = 0.3, window: float = 2.0, limit: float = 120.0
) -> float:
    """Wait until the processes and PostgreSQL together use less than `cores` of CPU over one
    `window` (or `limit` seconds have passed); return the seconds waited.

    Why: the step at half of the maximum, and the repeat of a missed step, follow steps that may
    have saturated, and a bank still working off their backlog when the next step starts would be
    measured with that backlog (docs/performance.md). The seconds waited go into the results."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        meter = CpuMeter(pids)
        meter.start()
        await asyncio.sleep(window)
        busy = sum(meter.stop().values()) / window
        if busy < cores or loop.time() - started >= limit:
            return loop.time() - started
