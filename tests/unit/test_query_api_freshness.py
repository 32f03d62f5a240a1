"""Waiting for a version (read-your-writes): woken by changes, re-read as a fallback, bounded."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bank_query_api.freshness import ReadModelChanges, wait_for_version


@dataclass(frozen=True)
class Row:
    version: int


class ReadModel:
    """A row whose version the test moves, and a count of how often it was read."""

    def __init__(self, version: int | None) -> None:
        self.version = version
        self.reads = 0

    async def load(self) -> Row | None:
        self.reads += 1
        return None if self.version is None else Row(self.version)


def changes() -> ReadModelChanges:
    return ReadModelChanges("postgresql://unused")


async def test_a_row_already_at_the_version_is_answered_after_one_read() -> None:
    model = ReadModel(version=3)
    fresh = await wait_for_version(model.load, changes().next_change, 2, bound=5.0, recheck=1.0)
    assert (fresh.row, fresh.reached, model.reads) == (Row(3), True, 1)


async def test_a_change_wakes_the_wait_before_the_next_re_read() -> None:
    model, signals = ReadModel(version=1), changes()
    waiting = asyncio.create_task(
        wait_for_version(model.load, signals.next_change, 2, bound=30.0, recheck=30.0)
    )
    await asyncio.sleep(0.05)
    model.version = 2
    started = time.monotonic()
    signals.changed()
    fresh = await asyncio.wait_for(waiting, 2.0)
    assert (fresh.row, fresh.reached) == (Row(2), True)
    assert time.monotonic() - started < 1.0
    assert model.reads == 2


async def test_without_a_change_the_periodic_re_read_finds_the_version() -> None:
    model = ReadModel(version=None)
    waiting = asyncio.create_task(
        wait_for_version(model.load, changes().next_change, 1, bound=30.0, recheck=0.02)
    )
    await asyncio.sleep(0.05)
    model.version = 1
    fresh = await asyncio.wait_for(waiting, 2.0)
    assert (fresh.row, fresh.reached) == (Row(1), True)


async def test_at_the_bound_it_answers_with_the_latest_row_read() -> None:
    model = ReadModel(version=4)
    started = time.monotonic()
    fresh = await wait_for_version(model.load, changes().next_change, 5, bound=0.2, recheck=0.05)
    elapsed = time.monotonic() - started
    assert (fresh.row, fresh.reached) == (Row(4), False)
    assert 0.2 <= elapsed < 1.0
    assert model.reads >= 3  # re-read along the way, and once more at the bound


async def test_a_row_that_never_appears_is_none_at_the_bound() -> None:
    fresh = await wait_for_version(
        ReadModel(version=None).load, changes().next_change, 1, bound=0.05, recheck=0.01
    )
    assert (fresh.row, fresh.reached) == (None, False)


async def test_a_change_between_the_read_and_the_wait_is_not_missed() -> None:
    """The wait takes its event before reading: a change signalled during the read sets it."""
    signals = changes()
    model = ReadModel(version=1)

    async def load_then_change() -> Row | None:
        row = await model.load()
        if model.reads == 1:
            model.version = 2
            signals.changed()  # lands after the read, before the wait
        return row

    started = time.monotonic()
    fresh = await wait_for_version(
        load_then_change, signals.next_change, 2, bound=30.0, recheck=30.0
    )
    assert (fresh.row, fresh.reached) == (Row(2), True)
    assert time.monotonic() - started < 1.0


def test_each_change_sets_the_event_handed_out_and_starts_a_new_one() -> None:
    signals = changes()
    before = signals.next_change()
    assert signals.next_change() is before
    signals.changed()
    assert before.is_set()
    assert not signals.next_change().is_set()
    assert signals.next_change() is not before
