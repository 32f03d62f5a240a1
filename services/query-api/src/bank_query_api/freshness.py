"""Read-your-writes: wait (bounded) until the read model has applied a version, woken by the
projector's NOTIFY on each committed batch, with a periodic re-read as the fallback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import asyncpg

from bank_shared.channels import READ_MODEL_CHANNEL
from bank_shared.db import KEEPALIVES, Connection

log = logging.getLogger(__name__)

# The projector runs `SELECT pg_notify(CHANNEL, '')` in every batch transaction: the NOTIFY is
# delivered only when the batch commits, so a re-read after it sees the batch.
CHANNEL = READ_MODEL_CHANNEL
# Names the connection in pg_stat_activity (and lets tests cut it).
APPLICATION_NAME = "bank-query-api-changes"


class ReadModelChanges:
    """One LISTEN connection per instance; every notification wakes every waiting request."""

    def __init__(self, dsn: str, *, retry_interval: float = 1.0, keepalive: float = 5.0) -> None:
        self.dsn = dsn
        self.retry_interval = retry_interval
        self.keepalive = keepalive
        self.connected = asyncio.Event()
        self._next = asyncio.Event()

    def next_change(self) -> asyncio.Event:
        """Set at the next change. Take it before reading, so a change committed between the
        read and the wait still wakes the waiter."""
        return self._next

    def changed(self) -> None:
        current, self._next = self._next, asyncio.Event()
        current.set()

    async def run(self) -> None:
        """Listen until cancelled; reconnect after the connection is lost."""
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning(
                    "read model listener: %s; reconnecting in %.1fs", error, self.retry_interval
                )
            except Exception:
                log.exception("read model listener failed; reconnecting")
            await asyncio.sleep(self.retry_interval)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self.dsn, server_settings={"application_name": APPLICATION_NAME, **KEEPALIVES}
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            # Batches committed while nobody listened: the waiters re-read now, not at their
            # next periodic re-read.
            self.changed()
            self.connected.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.keepalive)
                if not lost.is_set():
                    # A silent network failure only shows when we talk.
                    async with asyncio.timeout(self.keepalive):
                        await conn.fetchval("SELECT 1")
            raise ConnectionResetError("the LISTEN connection was closed")
        finally:
            self.connected.clear()
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, _payload: object) -> None:
        self.changed()


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


RowT = TypeVar("RowT", bound=Versioned)


@dataclass(frozen=True)
class Freshness(Generic[RowT]):
    """The latest row read (None if there is none yet) and whether it reached the version."""

    row: RowT | None
    reached: bool


async def wait_for_version(
    load: Callable[[], Awaitable[RowT | None]],
    next_change: Callable[[], asyncio.Event],
    min_version: int,
    *,
    bound: float,
    recheck: float,
    clock: Callable[[], float] = time.monotonic,
) -> Freshness[RowT]:
    """Read until the row is at `min_version` or later, re-reading at each change and at least
    every `recheck` seconds, for at most `bound` seconds."""
    deadline = clock() + bound
    while True:
        change = next_change()
        row = await load()
        if row is not None and row.version >= min_version:
            return Freshness(row, reached=True)
        remaining = deadline - clock()
        if remaining <= 0:
            return Freshness(row, reached=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(change.wait(), min(recheck, remaining))
