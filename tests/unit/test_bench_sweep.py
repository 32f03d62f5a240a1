"""The bench's sweep: a missed step is run once more at its rate, once the system is quiet;
two misses in a row end it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from bench import openloop
from bench.openloop import LoadShape, Step, Workload, max_sustained, sweep


class NoBank:
    """Transfers that complete at once: only the priming transfers reach it here."""

    def __init__(self) -> None:
        self.name = "fake"
        self.processes: dict[str, int | None] = {}

    async def transfer(self, source: str, target: str, amount: Decimal) -> None:
        return None


def scripted_steps(
    monkeypatch: pytest.MonkeyPatch, outcomes: dict[float, list[bool]]
) -> list[float | str]:
    """Replace the measurement of a step: each rate holds or misses as `outcomes` lists, in
    order. Returns the rates measured, in order (the held warm-up's rate included), with
    "quiet" where the sweep waited for the system to be quiet."""
    measured: list[float | str] = []
    left: dict[float, Iterator[bool]] = {rate: iter(seq) for rate, seq in outcomes.items()}

    async def fake_run_step(
        system: object,
        rate: float,
        next_transfer: Callable[[], tuple[str, str, Decimal]],
        shape: LoadShape,
    ) -> Step:
        measured.append(rate)
        held = next(left[rate], False) if rate in left else True
        return Step(rate, rate if held else rate / 2, 10, 0, 0, sustained=held)

    async def fake_wait_until_quiet(pids: object) -> float:
        measured.append("quiet")
        return 0.0

    monkeypatch.setattr(openloop, "run_step", fake_run_step)
    monkeypatch.setattr(openloop, "wait_until_quiet", fake_wait_until_quiet)
    return measured


SHAPE = LoadShape(warm_up=1.0, warm_up_rate=1.0)
WORKLOAD = Workload(["a", "b"])


async def test_a_step_missed_once_is_run_again_and_the_sweep_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured = scripted_steps(monkeypatch, {25: [False, True], 50: [True], 100: [False, False]})
    steps = await sweep(NoBank(), [25, 50, 100, 200], WORKLOAD, SHAPE)
    assert measured == [1.0, 25, "quiet", 25, 50, 100, "quiet", 100]
    assert [(s.offered_per_s, s.sustained, s.repeated) for s in steps] == [
        (25, False, True),
        (25, True, False),
        (50, True, False),
        (100, False, True),
        (100, False, False),
    ]
    assert max_sustained(steps) == 50


async def test_a_first_step_missed_twice_ends_the_sweep_with_nothing_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured = scripted_steps(monkeypatch, {25: [False, False]})
    steps = await sweep(NoBank(), [25, 50], WORKLOAD, SHAPE)
    assert measured == [1.0, 25, "quiet", 25]
    assert max_sustained(steps) == 0.0


async def test_without_repeats_the_first_miss_ends_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured = scripted_steps(monkeypatch, {25: [True], 50: [False, True]})
    shape = LoadShape(warm_up=1.0, warm_up_rate=1.0, repeat_missed=False)
    steps = await sweep(NoBank(), [25, 50, 100], WORKLOAD, shape)
    assert measured == [1.0, 25, 50]
    assert [s.repeated for s in steps] == [False, False]
    assert max_sustained(steps) == 25
