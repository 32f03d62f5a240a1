"""Group commit: what concurrent requests write goes to PostgreSQL together, in one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Items per write at most: a burst is written in several writes of bounded size.
MAX_BATCH = 200


class GroupCommit(Generic[T, R]):
    """Writes the items of concurrent callers in batches: one `write` (one transaction) per
    batch, one batch at a time.

    Why: a transaction per POST was what held the bank's throughput down
    (docs/performance.md). Nothing waits on purpose: a write starts as soon as no write is
    running, with everything that arrived meanwhile. So a lone request is written at once, and
    a busy API writes bigger batches, not later ones.

    `write` returns one result per item, in order. A caller's `add` returns its item's result
    once the batch is committed, and raises what the write raised, or its result if that is an
    exception (an answer for that item alone, such as a reused idempotency key). A
    batch that fails with one of `item_errors` (errors one item can cause, such as a value the
    database refuses) is written again one item at a time, so that failure reaches only the
    callers whose item fails alone. Any other error (the database unreachable, a timeout)
    fails the whole batch at once: trying its items one by one would only repeat it, each
    time as slowly. A caller that stops waiting (cancelled) does not take its item back: it is
    written with its batch, as a request cancelled during its own INSERT could have been.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]],
        *,
        item_errors: tuple[type[Exception], ...] = (),
        max_batch: int = MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._write = write
        self._item_errors = item_errors
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, item: T) -> R:
        """`item`'s result, once it is committed; raise if its write failed."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        # The writer takes everything waiting before it ends (no await between its last look
        # and its end), so an item is never left behind by a writer that is finishing.
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name="group commit")
        return await done

    async def _write_waiting(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._write_batch(batch)
        except BaseException:  # cancelled: the process is stopping, nobody is answered
            for _, done in batch + self._waiting:
                done.cancel()  # does nothing to a caller already answered
            self._waiting.clear()
            raise

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
        except self._item_errors as error:
            if len(batch) == 1:
                _fail(batch[0][1], error)
                return
            log.warning(
                "a write of %d commands failed (%r); writing them one at a time",
                len(batch),
                error,
            )
            for one in batch:
                await self._write_batch([one])
            return
        except Exception as error:
            for _, done in batch:
                _fail(done, error)
            return
        if len(results) != len(batch):  # a bug in `write`: no caller may get another's answer
            mismatch = RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
            for _, done in batch:
                _fail(done, mismatch)
            return
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():  # its caller went away; the answer was for it alone
                continue
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result)


def _fail(done: asyncio.Future[R], error: Exception) -> None:
    """The item's write failed."""
    if done.done():
        # Its caller was cancelled (the client went away): nobody waits for the answer, but a
        # command that could not be written should not vanish without a word.
        log.warning("a command whose request went away could not be written: %r", error)
        return
    done.set_exception(error)
