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

from bank_shared.channels import READ_MODEL_CHANNEL
from bank_shared.db import KEEPALIVES, Connection
from bank_shared.http.listen import Listener

log = logging.getLogger(__name__)

# The projector notifies CHANNEL in the statement that writes each batch: the NOTIFY is
# delivered only when the batch commits, so a re-read after it sees the batch. (Its payload,
# the transfers the batch finished, is not needed here: any change wakes every waiter.)
CHANNEL = READ_MODEL_CHANNEL
# Names the connection in pg_stat_activity (and lets tests cut it).
APPLICATION_NAME = "bank-query-api-changes"


class ReadModelChanges(Listener):
    """One LISTEN connection per instance; every notification wakes every waiting request."""

    def __init__(self, dsn: str, *, retry_interval: float = 1.0, keepalive: float = 5.0) -> None:
        super().__init__(
            dsn,
            CHANNEL,
            name="read model listener",
            application_name=APPLICATION_NAME,
            log=log,
            server_settings=KEEPALIVES,
            retry_interval=retry_interval,
            keepalive=keepalive,
        )
        self._next = asyncio.Event()

    def next_change(self) -> asyncio.Event:
        """Set at the next change. Take it before reading, so a change committed between the
        read and the wait still wakes the waiter."""
        return self._next

    def changed(self) -> None:
        current, self._next = self._next, asyncio.Event()
        current.set()

    async def caught_up(self, _conn: Connection) -> None:
        # Batches committed while nobody listened: the waiters re-read now, not at their next
        # periodic re-read.
        self.changed()

    def notified(self, _payload: str) -> None:
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
