"""The command API's group commit: concurrent requests' commands share one write, a lone one
is written at once, a failing write fails only the items that fail alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bank_command_api.group_commit import GroupCommit


class Writes:
    """Records each write's items; holds a write open until released, and fails the writes
    that contain a poisoned item."""

    def __init__(self, *, poisoned: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.poisoned = poisoned
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def __call__(self, items: Sequence[str]) -> None:
        self.calls.append(list(items))
        self.started.set()
        await self.release.wait()
        if self.poisoned & set(items):
            raise ValueError(f"refused {sorted(self.poisoned & set(items))}")


async def test_a_lone_item_is_written_at_once_on_its_own() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    await asyncio.wait_for(group.add("a"), 1)
    assert writes.calls == [["a"]]


async def test_items_that_arrive_during_a_write_go_together_in_the_next() -> None:
    writes = Writes()
    writes.release.clear()
    group = GroupCommit(writes)
    first = asyncio.create_task(group.add("a"))
    await writes.started.wait()
    later = [asyncio.create_task(group.add(item)) for item in ("b", "c", "d")]
    await asyncio.sleep(0)
    assert not any(task.done() for task in [first, *later]), "nothing is answered before its commit"
    writes.release.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 1)
    assert writes.calls == [["a"], ["b", "c", "d"]]


async def test_a_batch_is_at_most_max_batch_items() -> None:
    writes = Writes()
    writes.release.clear()
    group = GroupCommit(writes, max_batch=2)
    first = asyncio.create_task(group.add("a"))
    await writes.started.wait()
    later = [asyncio.create_task(group.add(item)) for item in ("b", "c", "d", "e", "f")]
    await asyncio.sleep(0)
    writes.release.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 1)
    assert writes.calls == [["a"], ["b", "c"], ["d", "e"], ["f"]]


async def test_a_failed_write_fails_only_the_item_that_fails_alone() -> None:
    writes = Writes(poisoned=frozenset({"c"}))
    writes.release.clear()
    group = GroupCommit(writes)
    first = asyncio.create_task(group.add("a"))
    await writes.started.wait()
    later = {item: asyncio.create_task(group.add(item)) for item in ("b", "c", "d")}
    await asyncio.sleep(0)
    writes.release.set()
    await asyncio.wait_for(first, 1)
    await asyncio.wait_for(later["b"], 1)
    await asyncio.wait_for(later["d"], 1)
    with pytest.raises(ValueError, match="refused"):
        await asyncio.wait_for(later["c"], 1)
    # The batch failed, then each of its items was written on its own.
    assert writes.calls == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]


async def test_a_caller_that_stops_waiting_does_not_stop_the_others() -> None:
    writes = Writes()
    writes.release.clear()
    group = GroupCommit(writes)
    first = asyncio.create_task(group.add("a"))
    await writes.started.wait()
    gone = asyncio.create_task(group.add("b"))
    stays = asyncio.create_task(group.add("c"))
    await asyncio.sleep(0)
    gone.cancel()
    writes.release.set()
    await asyncio.wait_for(asyncio.gather(first, stays), 1)
    assert gone.cancelled()
    # Its item is written with its batch: cancelling a request does not take its command back.
    assert writes.calls == [["a"], ["b", "c"]]


async def test_a_new_write_starts_after_the_last_one_ended() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    await group.add("a")
    await group.add("b")
    assert writes.calls == [["a"], ["b"]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Writes(), max_batch=0)
