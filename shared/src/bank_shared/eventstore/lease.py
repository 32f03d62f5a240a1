"""The outbox relay's leadership: a lease in PostgreSQL that the leader renews, so that a leader
that stops making progress (crashed, SIGSTOPped, cut off) loses it within a known time.

An advisory lock is not enough: it lives as long as the leader's database session, and the
kernel of a paused process still answers TCP keepalives, so a SIGSTOPped leader would keep it
for ever and nothing would be published.

The holder renews its lease from the relay's own loop, between rounds: a round that hangs also
stops the renewals. It counts its lease valid until `duration` after it *sent* the renewal (by
its own monotonic clock), a little before the database's `expires_at`, which counts from when
the database ran it. So a leader that wakes from a pause, or whose renewal went unanswered,
finds its lease over before any standby can have taken it, and sends nothing more
(relay.py checks `valid` before each round's send).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from bank_shared.db import Connection

# Taken if free, expired, or already ours; a takeover counts a new term.
CLAIM = (
    "INSERT INTO relay_lease AS l (lease_key, holder, term, expires_at)"
    " VALUES ($1, $2, 1, now() + $3::interval)"
    " ON CONFLICT (lease_key) DO UPDATE SET holder = EXCLUDED.holder,"
    " term = l.term + (l.holder <> EXCLUDED.holder)::int, expires_at = EXCLUDED.expires_at"
    " WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()"
    " RETURNING term"
)
RELEASE = "UPDATE relay_lease SET expires_at = now() WHERE lease_key = $1 AND holder = $2"


class RelayLease:
    """One relay's claim on the lease `key` of its database."""

    def __init__(
        self, key: int, duration: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.key = key
        self.duration = duration
        # Unique to this claim; the host and pid tell an operator which process leads.
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.term: int | None = None
        self._clock = clock
        self._valid_until = -float("inf")
        self._renewed_at = -float("inf")

    @property
    def valid(self) -> bool:
        """Held, by this relay's own clock: it may send."""
        return self._clock() < self._valid_until

    def renewal_due(self) -> bool:
        """A third of the lease has passed since it was last renewed."""
        return self._clock() - self._renewed_at >= self.duration / 3

    def seconds_to_renewal(self) -> float:
        """How long until the next renewal is due (0 if it is)."""
        return max(0.0, self._renewed_at + self.duration / 3 - self._clock())

    async def claim(self, conn: Connection) -> bool:
        """Take or renew the lease; False if another relay holds it."""
        asked_at = self._clock()
        term = await conn.fetchval(CLAIM, self.key, self.holder, timedelta(seconds=self.duration))
        if term is None:
            self._valid_until = -float("inf")
            self.term = None
            return False
        self.term = term
        self._renewed_at = asked_at
        self._valid_until = asked_at + self.duration
        return True

    async def release(self, conn: Connection) -> None:
        """Give the lease up now (a clean stop): a standby takes over without waiting."""
        self._valid_until = -float("inf")
        await conn.execute(RELEASE, self.key, self.holder)
