"""Rows handed over by the writers of the relay's own process: when they may be sent as handed,
without the relay reading them back, and still reach Kafka in each stream's version order.

A writer in the same process as the relay hands over its outbox rows right after its commit,
with the token its statement NOTIFYed (`store.write`). The relay sends them only when their
commit's NOTIFY has arrived and every NOTIFY before it was one of its own writers' whose rows
it has: PostgreSQL delivers notifications in commit order, and a stream's next version is
committed only after the previous one, so by then every earlier version of the stream has
been handed over and sent, or is in the same handover, before it.

Anything else makes the relay read the outbox instead: a NOTIFY from another process
(another instance, or a commit in a transaction, which hands nothing over), a handover that
does not come within `wait` of its NOTIFY (its writer was cancelled after its commit), a new
leadership (rows committed before the relay listened). Such a read sees every commit notified
before it began, so the tokens heard by then are dropped with their rows. Rows the read sent
whose NOTIFY came only after it began are left out when that NOTIFY is taken; should one still
go twice, the consumers drop the copy (they drop every message they have seen).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from bank_shared.eventstore.store import OutboxRow

# How long handed-over rows whose NOTIFY never came are kept: a read sent them long before.
STALE_AFTER = 10.0
# How many reads' ids are remembered, to leave out rows a read sent before their NOTIFY came.
READS_REMEMBERED = 4


class Handovers:
    def __init__(
        self, prefix: str, wait: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`prefix` starts the tokens of this process's writers; `wait` (seconds) is how long
        a NOTIFY of theirs waits for its rows before the relay reads the outbox instead."""
        self._prefix = prefix
        self._wait = wait
        self._clock = clock
        self._heard: deque[tuple[str, float]] = deque()  # tokens in commit order, when heard
        self._handed: dict[str, tuple[Sequence[OutboxRow], float]] = {}
        self._read: deque[set[int]] = deque(maxlen=READS_REMEMBERED)
        # True until a read has seen every row committed before the relay began to listen.
        self.must_read = True

    def heard(self, token: str) -> None:
        """A commit's NOTIFY (in commit order)."""
        self._heard.append((token, self._clock()))
        if not token.startswith(self._prefix):
            self.must_read = True

    def handed(self, token: str, rows: Sequence[OutboxRow]) -> None:
        """A writer's rows, right after its commit."""
        self._handed[token] = (rows, self._clock())

    def take(self) -> list[OutboxRow]:
        """The rows that may be sent now, in order: those of the commits heard of, up to the
        first whose rows are not here (then, if it is another process's commit or its rows are
        late, `must_read` is set)."""
        rows: list[OutboxRow] = []
        while self._heard:
            token, heard_at = self._heard[0]
            entry = self._handed.pop(token, None)
            if entry is None:
                if not token.startswith(self._prefix) or self._clock() - heard_at >= self._wait:
                    self.must_read = True
                break
            self._heard.popleft()
            rows += [row for row in entry[0] if not any(row.id in ids for ids in self._read)]
        return rows

    def next_deadline(self) -> float | None:
        """When the first commit heard of, if its rows are late, stops waiting for them."""
        if not self._heard:
            return None
        return self._heard[0][1] + self._wait

    def ready(self) -> bool:
        """Whether `take` has rows to give now."""
        return bool(self._heard) and self._heard[0][0] in self._handed

    def reading(self) -> None:
        """A read of the outbox begins: it sees every commit heard of so far."""
        self.must_read = False
        for token, _ in self._heard:
            self._handed.pop(token, None)
        self._heard.clear()
        now = self._clock()
        for token in [t for t, (_, at) in self._handed.items() if now - at > STALE_AFTER]:
            del self._handed[token]

    def read(self, ids: Iterable[int], *, full: bool) -> None:
        """The read sent these rows; if it was `full` (its limit), more may be waiting."""
        self._read.append(set(ids))
        if full:
            self.must_read = True
