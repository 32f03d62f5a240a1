"""Open-loop load: transfers sent on a fixed schedule, latency counted from the scheduled time.

A closed loop (send, wait, send again) slows down with the system under test and so hides its
stalls ("coordinated omission"). Here the i-th transfer of a step is due at `start + i / rate`
whatever happened before; its latency runs from that due time to the moment the system reports
it complete, so a stall shows as the latency of every transfer that queued behind it.

Each step runs `warmup + window` seconds of schedule. Only transfers due inside the steady
window are measured, and the achieved rate counts completions inside that window. Before the
next step, everything in flight is given `drain` seconds to finish; a transfer not done by then
counts as lost, which marks the step unbounded.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from bench.cpu import CpuMeter, wait_until_quiet


class TransferSystem(Protocol):
    """A bank under load: `transfer` returns once the transfer is complete (or refused);
    `processes` names the processes doing its work, for the CPU account of each step."""

    name: str
    processes: dict[str, int | None]

    async def transfer(self, source: str, target: str, amount: Decimal) -> None: ...


PRIME_TRANSFERS = 20


@dataclass(frozen=True)
class LoadShape:
    warmup: float = 3.0
    window: float = 10.0
    drain: float = 15.0
    # Before the sweep, this long at `warm_up_rate`, not measured (see `sweep`).
    warm_up: float = 20.0
    warm_up_rate: float = 50.0
    # A step is sustained when it kept up with the schedule and its tail stayed bounded.
    max_p99_ms: float = 1000.0
    min_achieved_share: float = 0.9
    # A step that is not sustained is run once more at the same rate before the sweep stops.
    repeat_missed: bool = True
    # Then this many steps halve the gap between the highest rate held and the one missed.
    refine: int = 2


@dataclass
class Step:
    offered_per_s: float
    achieved_per_s: float
    measured: int
    lost: int
    errors: int
    error_samples: list[str] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    sustained: bool = False
    # Not sustained, and the same rate was run again right after (the next step).
    repeated: bool = False
    cpu_ms_per_transfer: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "offered_per_s": round(self.offered_per_s, 1),
            "achieved_per_s": round(self.achieved_per_s, 1),
            "measured": self.measured,
            "lost": self.lost,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "latency_ms": {k: round(v, 1) for k, v in self.latency_ms.items()},
            "sustained": self.sustained,
            "repeated": self.repeated,
            "cpu_ms_per_transfer": {k: round(v, 2) for k, v in self.cpu_ms_per_transfer.items()},
        }


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    return {
        "p50": percentile(ordered, 0.50),
        "p90": percentile(ordered, 0.90),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else math.nan,
    }


@dataclass(frozen=True)
class Workload:
    """The same accounts, pairs and amounts for every system: a seeded random sequence."""

    accounts: Sequence[str]
    seed: int = 7

    def pairs(self) -> Callable[[], tuple[str, str, Decimal]]:
        rng = random.Random(self.seed)

        def next_transfer() -> tuple[str, str, Decimal]:
            source, target = rng.sample(list(self.accounts), 2)
            return source, target, Decimal(rng.randint(1, 500)) / 100

        return next_transfer


async def run_step(
    system: TransferSystem,
    rate: float,
    next_transfer: Callable[[], tuple[str, str, Decimal]],
    shape: LoadShape,
) -> Step:
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    now = time.perf_counter
    start = now() + 0.05
    window_start, window_end = start + shape.warmup, start + shape.warmup + shape.window
    total = int(rate * (shape.warmup + shape.window))
    measured: list[float] = []
    completions_in_window = 0
    errors = 0
    error_samples: list[str] = []

    async def one(due: float) -> None:
        nonlocal completions_in_window, errors
        source, target, amount = next_transfer()
        try:
            await system.transfer(source, target, amount)
        except Exception as error:  # counted and reported; the load goes on
            errors += 1
            if len(error_samples) < 3:
                error_samples.append(repr(error)[:300])
            return
        done = now()
        if window_start <= done < window_end:
            completions_in_window += 1
        if window_start <= due < window_end:
            measured.append((done - due) * 1000)

    meter = CpuMeter({**system.processes, "bench": os.getpid()})
    metering = False
    cpu: dict[str, float] = {}
    tasks: list[asyncio.Task[None]] = []
    for i in range(total):
        due = start + i / rate
        if not metering and due >= window_start:
            meter.start()
            metering = True
        # Yields even when behind schedule, so sends already made keep making progress.
        await asyncio.sleep(max(0.0, due - now()))
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.sleep(max(0.0, window_end - now()))
    if metering:
        cpu = meter.stop()
    due_in_window = sum(1 for i in range(total) if window_start <= start + i / rate < window_end)
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, window_end - now()) + shape.drain)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)

    lost = due_in_window - len(measured)
    summary = latency_summary(measured)
    if lost:
        # A lost transfer has no latency; the tail is unbounded, not merely large.
        summary["p99"] = summary["max"] = math.inf
    step = Step(
        offered_per_s=rate,
        achieved_per_s=completions_in_window / shape.window,
        measured=len(measured),
        lost=lost,
        errors=errors,
        error_samples=error_samples,
        latency_ms=summary,
    )
    if completions_in_window:
        per = 1000 / completions_in_window
        step.cpu_ms_per_transfer = {name: seconds * per for name, seconds in cpu.items()}
        step.cpu_ms_per_transfer["total"] = sum(cpu.values()) * per
    step.sustained = (
        lost == 0
        and errors == 0
        and summary["p99"] <= shape.max_p99_ms
        and step.achieved_per_s >= shape.min_achieved_share * rate
    )
    return step


async def sweep(
    system: TransferSystem,
    rates: Sequence[float],
    workload: Workload,
    shape: LoadShape,
    progress: Callable[[str, Step], Awaitable[None] | None] | None = None,
) -> list[Step]:
    """Run the rates (ascending) in order; stop at the first rate that was not sustained twice
    in a row (saturation). Then refine: `shape.refine` more steps, each at the middle of the
    highest rate held and the lowest missed, so every system's maximum is known to a quarter
    of the gap its grid step left (with the default 2), not to the whole gap. No refinement
    when nothing held or the grid ended before a miss (its maximum is then a lower bound).

    Why twice: a single step can miss its bound on a transient far below saturation, and one
    run's maximum was then 0 (docs/performance.md). A saturated system misses the repeat too,
    so the maximum still only counts steps that held; the missed step stays in the results,
    marked `repeated`. The repeat starts once the system is quiet again. Every system
    gets the same rule.

    Why refine: the grid's steps are 25% apart where the eventsourcing peer saturates (200,
    250) and 17% where ours does (600, 700), so a maximum could be off by that much, and the
    ratio of two maxima by more. Every system gets the same refinement, each from its own
    grid step."""
    next_transfer = workload.pairs()
    # A few transfers one at a time first, not measured: connections opened, consumer groups
    # joined, caches filled, so the first step measures the system and not its start.
    for _ in range(PRIME_TRANSFERS):
        await system.transfer(*next_transfer())
    # Then a held load, not measured either. A broker started for the run compiles its hot
    # paths (the JVM's JIT) during its first minute of traffic, on the same cores: in a full
    # run Kafka took 22.3 ms of CPU per transfer at the first step (25/s) against 6.6 to 10.0 ms
    # at that rate on a warm broker (`bench.steady_rate`), and the third step (100/s) of two
    # runs on a fresh broker missed its p99 bound while runs on a warm one held it. Every
    # system gets the same warm-up.
    if shape.warm_up > 0:
        warm_up = LoadShape(warmup=0.0, window=shape.warm_up, drain=shape.drain)
        await run_step(system, shape.warm_up_rate, next_transfer, warm_up)
    steps: list[Step] = []

    async def measure(rate: float) -> Step:
        step = await run_step(system, rate, next_transfer, shape)
        steps.append(step)
        if progress is not None:
            result = progress(system.name, step)
            if result is not None:
                await result
        return step

    async def holds(rate: float) -> bool:
        step = await measure(rate)
        if not step.sustained and shape.repeat_missed:
            step.repeated = True
            # From a quiet system: the missed step's backlog would otherwise be measured too.
            await wait_until_quiet(system.processes)
            step = await measure(rate)
        return step.sustained

    held: float | None = None
    for rate in rates:
        if not await holds(rate):
            missed = rate
            break
        held = rate
    else:
        return steps  # the grid ended before the system saturated
    if held is None:
        return steps  # nothing held: no gap to refine
    for _ in range(shape.refine):
        middle = round((held + missed) / 2)
        if not held < middle < missed:
            break  # the gap is down to a transfer a second
        await wait_until_quiet(system.processes)  # the missed step left a backlog
        if await holds(middle):
            held = middle
        else:
            missed = middle
    return steps


def max_sustained(steps: Sequence[Step]) -> float:
    """The highest achieved rate among the steps that stayed bounded (0 if none did)."""
    return max((s.achieved_per_s for s in steps if s.sustained), default=0.0)
