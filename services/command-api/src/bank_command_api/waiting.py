"""Waiting for decisions: one LISTEN connection per instance wakes the requests that wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from uuid import UUID

import asyncpg

from bank_command_api.ledger import DECIDED_CHANNEL, CommandRecord, load_decided
from bank_shared.db import Connection

log = logging.getLogger(__name__)


# Names the connection in pg_stat_activity (and lets tests cut it).
APPLICATION_NAME = "bank-command-api-decisions"


class DecisionListener:
    """Resolves the futures of waiting requests from NOTIFYs on DECIDED_CHANNEL. Whichever
    instance consumed an outcome notifies; every instance hears it."""

    def __init__(self, dsn: str, *, retry_interval: float = 1.0, keepalive: float = 5.0) -> None:
        self.dsn = dsn
        self.retry_interval = retry_interval
        self.keepalive = keepalive
        self.connected = asyncio.Event()
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

    def resolve(self, record: CommandRecord) -> None:
        for future in self._waiting.get(record.command_id, ()):
            if not future.done():
                future.set_result(record)

    async def run(self) -> None:
        """Listen until cancelled; reconnect after the connection is lost."""
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning(
                    "decision listener: %s; reconnecting in %.1fs", error, self.retry_interval
                )
            except Exception:
                log.exception("decision listener failed; reconnecting")
            await asyncio.sleep(self.retry_interval)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self.dsn, server_settings={"application_name": APPLICATION_NAME}
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            await conn.add_listener(DECIDED_CHANNEL, self._on_notify)
            # Decisions notified while we were not listening: the requests still waiting for
            # them would otherwise sit out their whole timeout.
            for record in await load_decided(conn, list(self._waiting)):
                self.resolve(record)
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

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        try:
            record = CommandRecord.from_json(str(payload))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable decision notification: %.200s", payload)
            return
        self.resolve(record)
