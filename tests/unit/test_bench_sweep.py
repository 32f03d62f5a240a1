"""The bench's sweep: a missed step is run once more at its rate, once the system is quiet;
two misses in a row end it; then steps halve the gap between the highest rate held and the
lowest missed."""

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


SHAPE = LoadShape(warm_up=1.0, warm_up_rate=1.0, refine=0)
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
    shape = LoadShape(warm_up=1.0, warm_up_rate=1.0, repeat_missed=False, refine=0)
    steps = await sweep(NoBank(), [25, 50, 100], WORKLOAD, shape)
    assert measured == [1.0, 25, 50]
    assert [s.repeated for s in steps] == [False, False]
    assert max_sustained(steps) == 25


async def test_refinement_halves_the_gap_between_held_and_missed_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured = scripted_steps(monkeypatch, {200: [False, False], 150: [True], 175: [False, False]})
    shape = LoadShape(warm_up=1.0, warm_up_rate=1.0, refine=2)
    steps = await sweep(NoBank(), [50, 100, 200, 400], WORKLOAD, shape)
    # 100 held, 200 missed twice: 150 held, then 175 missed twice.
    assert measured == [1.0, 50, 100, 200, "quiet", 200, "quiet", 150, "quiet", 175, "quiet", 175]
    assert [(s.offered_per_s, s.sustained) for s in steps][-3:] == [
        (150, True),
        (175, False),
        (175, False),
    ]
    assert max_sustained(steps) == 150


async def test_a_refinement_step_missed_once_and_held_on_its_repeat_counts_as_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured = scripted_steps(monkeypatch, {200: [False, False], 150: [False, True]})
    shape = LoadShape(warm_up=1.0, warm_up_rate=1.0, refine=2)
    steps = await sweep(NoBank(), [100, 200], WORKLOAD, shape)
    # 150 held on its repeat, so the next middle is 175 (it holds: not scripted).
    assert measured == [1.0, 100, 200, "quiet", 200, "quiet", 150, "quiet", 150, "quiet", 175]
    assert max_sustained(steps) == 175


async def test_no_refinement_when_nothing_held_or_nothing_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shape = LoadShape(warm_up=1.0, warm_up_rate=1.0, refine=2)
    measured = scripted_steps(monkeypatch, {25: [False, False]})
    await sweep(NoBank(), [25, 50], WORKLOAD, shape)
    assert measured == [1.0, 25, "quiet", 25]
    measured = scripted_steps(monkeypatch, {})
    await sweep(NoBank(), [25, 50], WORKLOAD, shape)
    assert measured == [1.0, 25, 50]


async def test_refinement_stops_when_the_gap_is_one_transfer_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured = scripted_steps(monkeypatch, {2: [False, False]})
    shape = LoadShape(warm_up=1.0, warm_up_rate=1.0, refine=3)
    await sweep(NoBank(), [1, 2], WORKLOAD, shape)
    assert measured == [1.0, 1, 2, "quiet", 2]
