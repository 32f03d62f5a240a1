"""What a service last knew of the streams it wrote or read, so that a batch can be decided
without reading them again: trusted only where the write itself proves it was still true.

A handler that decides a batch from these states writes it only if every decision appends
events. Such a write proves the states were current: it appends each stream's next version,
which UNIQUE (stream_id, version) refuses if any other writer (another instance after a
rebalance, a paused one) appended first, and it records each message as processed, which the
processed-message key refuses if the message was handled before. Either refusal writes nothing
(ConcurrencyError): the handler forgets those streams and decides the batch again from a read,
as it would without this. A decision that appends nothing (a rejection, an answer that moves
nothing) has no such proof, so a batch with one is decided again from a read before anything is
written.

One assumption: PostgreSQL never loses a commit it acknowledged (`synchronous_commit` on, as
here). After restoring a backup, or failing over to a replica that may lack the last commits,
restart the services so that they forget what they knew: a state ahead of the database would
not conflict. Where a failover can happen while the services keep running, run them with no
known states (BANK_ACCOUNTS_KNOWN_ACCOUNTS=0, BANK_SAGA_KNOWN_TRANSFERS=0).

Why (docs/performance.md, change 32): a batch's two reads were about 4.6 ms of its time at 270
transfers/s, and a round trip fewer is also less waiting for the cores.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from bank_shared.eventstore.store import ConcurrencyError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


async def written_if_current(write: Awaitable[object], log: logging.Logger, what: str) -> bool:
    """Await the write of a batch decided from known states; False if the database refused it
    (ConcurrencyError: what was known is out of date, or a message came again). Then the caller
    decides the batch from a read, in the same attempt: a refusal here is not a retry."""
    try:
        await write
    except ConcurrencyError as refused:
        log.debug("%s decided from known states refused (%s); reading", what, refused)
        return False
    return True


class KnownStates(Generic[K, V]):
    """The last known value of the `capacity` keys used most recently. An OrderedDict keeps
    the recency: the standard library's `functools.lru_cache` caches a function's results, not
    values that a caller sets and forgets.

    `version` (a stream's version) keeps a value from being replaced by an older one: two
    batches of one process can finish out of order, and the later of them may have read the
    stream before the other one wrote it."""

    def __init__(self, capacity: int = 10_000, version: Callable[[V], int] | None = None) -> None:
        self._values: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity
        self._version = version

    def __len__(self) -> int:
        return len(self._values)

    @property
    def enabled(self) -> bool:
        """False with a capacity of 0: nothing is kept, and every decision starts from a read."""
        return self._capacity > 0

    def all_of(self, keys: Iterable[K]) -> dict[K, V] | None:
        """The value of every key, or None if any of them is not known."""
        found: dict[K, V] = {}
        for key in keys:
            if key not in self._values:
                return None
            found[key] = self._values[key]
        for key in found:
            self._values.move_to_end(key)
        return found

    def any_of(self, keys: Iterable[K]) -> dict[K, V]:
        """The value of each key that is known."""
        found = {key: self._values[key] for key in keys if key in self._values}
        for key in found:
            self._values.move_to_end(key)
        return found

    def remember(self, values: Mapping[K, V]) -> None:
        for key, value in values.items():
            known = self._values.get(key)
            if (
                known is not None
                and self._version is not None
                and self._version(known) > self._version(value)
            ):
                continue
            self._values[key] = value
            self._values.move_to_end(key)
        while len(self._values) > self._capacity:
            self._values.popitem(last=False)

    def forget(self, keys: Iterable[K]) -> None:
        for key in keys:
            self._values.pop(key, None)
