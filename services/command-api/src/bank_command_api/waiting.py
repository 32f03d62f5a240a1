"""Waiting for decisions: one LISTEN connection per instance wakes the requests that wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from uuid import UUID

from bank_command_api.ledger import DECIDED_CHANNEL, CommandRecord, load_decided
from bank_shared.db import KEEPALIVES, Connection
from bank_shared.http.listen import Listener

log = logging.getLogger(__name__)


# Names the connection in pg_stat_activity (and lets tests cut it).
APPLICATION_NAME = "bank-command-api-decisions"


class DecisionListener(Listener):
    """Resolves the futures of waiting requests from NOTIFYs on DECIDED_CHANNEL. Whichever
    instance consumed an outcome notifies; every instance hears it."""

    def __init__(self, dsn: str, *, retry_interval: float = 1.0, keepalive: float = 5.0) -> None:
        super().__init__(
            dsn,
            DECIDED_CHANNEL,
            name="decision listener",
            application_name=APPLICATION_NAME,
            log=log,
            retry_interval=retry_interval,
            keepalive=keepalive,
            # The server notices a vanished listener quickly, like every other connection.
            server_settings=KEEPALIVES,
        )
        self._waiting: dict[UUID, set[asyncio.Future[CommandRecord]]] = {}

    @contextlib.contextmanager
    def expect(self, command_id: UUID) -> Iterator[asyncio.Future[CommandRecord]]:
        """A future for the decision of `command_id`. Enter it before the command commits, so a
        decision that comes back at once is not missed."""
        future: asyncio.Future[CommandRecord] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(command_id, set()).add(future)
        try:
            yield future
        finally:
            waiters = self._waiting.get(command_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiting[command_id]

    @property
    def waiting(self) -> int:
        """How many commands have requests waiting for their decisions."""
        return len(self._waiting)

    def resolve(self, record: CommandRecord) -> None:
        for future in self._waiting.get(record.command_id, ()):
            if not future.done():
                future.set_result(record)

    async def caught_up(self, conn: Connection) -> None:
        # Decisions notified while we were not listening: the requests still waiting for them
        # would otherwise sit out their whole timeout.
        for record in await load_decided(conn, list(self._waiting)):
            self.resolve(record)

    def notified(self, payload: str) -> None:
        try:
            record = CommandRecord.from_json(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable decision notification: %.200s", payload)
            return
        self.resolve(record)
