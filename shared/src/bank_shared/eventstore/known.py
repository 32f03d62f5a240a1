"""The last known value of the keys used most recently: the streams a service last wrote or
read, so that it can decide a batch without reading them (unit_of_work.py says when)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KnownStates(Generic[K, V]):
    """At most `capacity` values, the least recently used dropped first (an OrderedDict: the
    standard library's `lru_cache` caches a function's results, not values a caller sets).

    `version` keeps a value from being replaced by an older one: two batches can finish out of
    order, and the later one may have read a stream before the other wrote it."""

    def __init__(self, capacity: int = 10_000, version: Callable[[V], int] | None = None) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be 0 or more, not {capacity}")
        self._values: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity
        self._version = version

    def __len__(self) -> int:
        return len(self._values)

    @property
    def enabled(self) -> bool:
        """False with a capacity of 0: nothing is kept."""
        return self._capacity > 0

    def any_of(self, keys: Iterable[K]) -> dict[K, V]:
        """The value of each key that is known."""
        found = {key: self._values[key] for key in keys if key in self._values}
        for key in found:
            self._values.move_to_end(key)
        return found

    def remember(self, values: Mapping[K, V]) -> None:
        if not self.enabled:
            return
        for key, value in values.items():
            known = self._values.get(key)
            if known is not None and self._version and self._version(known) > self._version(value):
                continue
            self._values[key] = value
            self._values.move_to_end(key)
        while len(self._values) > self._capacity:
            self._values.popitem(last=False)

    def forget(self, keys: Iterable[K]) -> None:
        for key in keys:
            self._values.pop(key, None)
