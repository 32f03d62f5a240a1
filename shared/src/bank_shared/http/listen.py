"""A dedicated PostgreSQL LISTEN connection that reconnects, keeps alive and hands on NOTIFYs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import asyncpg

from bank_shared.db import Connection


class Listener:
    """One LISTEN connection on `channel` per instance, kept until cancelled. A subclass says
    what a notification means (`notified`) and makes up for the ones sent while nobody listened
    (`caught_up`). `connected` is set while it listens."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        *,
        name: str,
        application_name: str,
        log: logging.Logger,
        server_settings: Mapping[str, str] | None = None,
        retry_interval: float = 1.0,
        keepalive: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.name = name
        # Names the connection in pg_stat_activity (and lets tests cut it).
        self.application_name = application_name
        self.log = log
        self.server_settings = dict(server_settings or {})
        self.retry_interval = retry_interval
        self.keepalive = keepalive
        self.connected = asyncio.Event()

    async def caught_up(self, conn: Connection) -> None:
        """Listening now: act on what was notified while nobody listened."""

    def notified(self, payload: str) -> None:
        """One notification on the channel."""

    async def run(self) -> None:
        """Listen until cancelled; reconnect after the connection is lost."""
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                self.log.warning(
                    "%s: %s; reconnecting in %.1fs", self.name, error, self.retry_interval
                )
            except Exception:
                self.log.exception("%s failed; reconnecting", self.name)
            await asyncio.sleep(self.retry_interval)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self.dsn,
            server_settings={"application_name": self.application_name, **self.server_settings},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            await conn.add_listener(self.channel, self._on_notify)
            await self.caught_up(conn)
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
        self.notified(str(payload))
