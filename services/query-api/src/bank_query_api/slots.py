"""Caps on requests that hold the server for long (change streams, `min_version` waits): past
its cap a request is refused at once with a 503 and `Retry-After`, never queued (OWASP API4)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from bank_shared.http.problems import ProblemError


class Slots:
    """At most `capacity` holders at once in this process. One event loop takes and gives
    back, so a counter is all it needs."""

    def __init__(self, capacity: int, refusal: Callable[[int], ProblemError]) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._refusal = refusal

    def take(self) -> None:
        """Hold a slot (give it back with `give_back`), or raise the refusal when all are held."""
        if self.in_use >= self.capacity:
            raise self._refusal(self.capacity)
        self.in_use += 1

    def give_back(self) -> None:
        self.in_use -= 1

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.take()
        try:
            yield
        finally:
            self.give_back()
