"""The command API's group commit: concurrent requests' commands share one write, a lone one
is written at once, each caller gets its own item's answer, a write refused for one item fails
only that item, any other failure fails its whole batch at once, and nobody is left waiting
when the process stops."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bank_command_api.group_commit import GroupCommit


class RefusedError(Exception):
    """What the database says of a value it refuses: one item's fault."""


class UnwelcomeError(Exception):
    """An answer for one item alone, such as a reused idempotency key."""


class Writes:
    """Records each write's items and answers each with its name in capitals (or, for an
    unwelcome item, an UnwelcomeError); holds a write open until released, and fails the
    writes that contain a poisoned item with `error`."""

    def __init__(
        self,
        *,
        poisoned: frozenset[str] = frozenset(),
        error: type[Exception] = RefusedError,
        hang_on: list[str] | None = None,
        unwelcome: frozenset[str] = frozenset(),
        answers: int | None = None,
    ) -> None:
        self.unwelcome = unwelcome
        self.answers = answers
        self.calls: list[list[str]] = []
        self.poisoned = poisoned
        self.error = error
        self.hang_on = hang_on
        self.hanging = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def __call__(self, items: Sequence[str]) -> list[str | Exception]:
        self.calls.append(list(items))
        self.started.set()
        if list(items) == self.hang_on:
            self.hanging.set()
            await asyncio.Event().wait()  # never set: only cancelling ends this write
        await self.release.wait()
        if self.poisoned & set(items):
            raise self.error(f"refused {sorted(self.poisoned & set(items))}")
        answers: list[str | Exception] = [
            UnwelcomeError(item) if item in self.unwelcome else item.upper() for item in items
        ]
        return answers[: self.answers]


async def behind_a_write(
    group: GroupCommit[str, str], writes: Writes, items: Sequence[str]
) -> tuple[asyncio.Task[str], list[asyncio.Task[str]]]:
    """Item "a" is written first and its write held open; `items` arrive meanwhile, so they
    wait for the next write. The caller releases the held write."""
    writes.release.clear()
    first = asyncio.create_task(group.add("a"))
    await writes.started.wait()
    later = [asyncio.create_task(group.add(item)) for item in items]
    await asyncio.sleep(0)
    return first, later


async def test_a_lone_item_is_written_at_once_on_its_own() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    added = asyncio.create_task(group.add("a"))
    # Two turns of the loop (the caller's, the writer's) and no timer: nothing gathers first.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert writes.started.is_set()
    await asyncio.wait_for(added, 1)
    assert writes.calls == [["a"]]


async def test_items_that_arrive_during_a_write_go_together_in_the_next() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    first, later = await behind_a_write(group, writes, ("b", "c", "d"))
    assert not any(task.done() for task in [first, *later]), "nothing is answered before its commit"
    writes.release.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 1)
    assert writes.calls == [["a"], ["b", "c", "d"]]


async def test_each_caller_gets_its_own_items_answer() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    first, later = await behind_a_write(group, writes, ("b", "c", "d"))
    writes.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, *later), 1) == ["A", "B", "C", "D"]


async def test_an_exception_as_an_items_answer_is_raised_to_its_caller_alone() -> None:
    writes = Writes(unwelcome=frozenset({"c"}))
    group = GroupCommit(writes)
    first, queued = await behind_a_write(group, writes, ("b", "c", "d"))
    later = dict(zip(("b", "c", "d"), queued, strict=True))
    writes.release.set()
    with pytest.raises(UnwelcomeError):
        await asyncio.wait_for(later["c"], 1)
    answered = await asyncio.wait_for(asyncio.gather(first, later["b"], later["d"]), 1)
    assert list(answered) == ["A", "B", "D"]
    # An answer, not a failed write: nothing is written again.
    assert writes.calls == [["a"], ["b", "c", "d"]]


async def test_a_write_that_answers_too_few_items_fails_its_whole_batch() -> None:
    writes = Writes(answers=2)
    group = GroupCommit(writes)
    first, later = await behind_a_write(group, writes, ("b", "c", "d"))
    writes.release.set()
    assert await asyncio.wait_for(first, 1) == "A"
    # Answers matched to callers by position would give someone another's answer.
    for task in later:
        with pytest.raises(RuntimeError, match="2 results for a batch of 3"):
            await asyncio.wait_for(task, 1)


async def test_a_batch_is_at_most_max_batch_items() -> None:
    writes = Writes()
    group = GroupCommit(writes, max_batch=2)
    first, later = await behind_a_write(group, writes, ("b", "c", "d", "e", "f"))
    writes.release.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 1)
    assert writes.calls == [["a"], ["b", "c"], ["d", "e"], ["f"]]


async def test_a_write_refused_for_one_item_fails_only_that_item() -> None:
    writes = Writes(poisoned=frozenset({"c"}))
    group = GroupCommit(writes, item_errors=(RefusedError,))
    first, queued = await behind_a_write(group, writes, ("b", "c", "d"))
    later = dict(zip(("b", "c", "d"), queued, strict=True))
    writes.release.set()
    await asyncio.wait_for(first, 1)
    await asyncio.wait_for(later["b"], 1)
    await asyncio.wait_for(later["d"], 1)
    with pytest.raises(RefusedError, match="refused"):
        await asyncio.wait_for(later["c"], 1)
    # The batch failed, then each of its items was written on its own.
    assert writes.calls == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]


async def test_any_other_failure_fails_the_whole_batch_at_once() -> None:
    writes = Writes(poisoned=frozenset({"c"}), error=ConnectionError)
    group = GroupCommit(writes, item_errors=(RefusedError,))
    first, later = await behind_a_write(group, writes, ("b", "c", "d"))
    writes.release.set()
    await asyncio.wait_for(first, 1)
    for task in later:
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(task, 1)
    # Not tried again one by one: with the database unreachable, that only repeats the wait.
    assert writes.calls == [["a"], ["b", "c", "d"]]


async def test_when_the_writer_is_cancelled_nobody_is_left_waiting() -> None:
    writes = Writes(poisoned=frozenset({"c"}), hang_on=["b"])
    group = GroupCommit(writes, item_errors=(RefusedError,))
    first, later = await behind_a_write(group, writes, ("b", "c", "d"))
    writes.release.set()
    await asyncio.wait_for(first, 1)
    # The batch b, c, d failed; the writer now writes them one at a time, and b hangs.
    await asyncio.wait_for(writes.hanging.wait(), 1)
    waiting = asyncio.create_task(group.add("e"))
    await asyncio.sleep(0)
    # As at shutdown, when the event loop cancels every task that is left.
    (writer,) = [task for task in asyncio.all_tasks() if task.get_name() == "group commit"]
    writer.cancel()
    done, pending = await asyncio.wait([*later, waiting], timeout=1)
    assert not pending, "callers left waiting after the writer was cancelled"
    assert all(task.cancelled() for task in done)


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
