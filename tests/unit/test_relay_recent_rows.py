"""The relay's count of rows it sent lately, which decides whether it lingers: the last whole
second's, or this second's so far if that is more; nothing after a second without any."""

from __future__ import annotations

from bank_shared.eventstore.relay import RecentRows


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_counts_at_once() -> None:
    clock = Clock()
    sent = RecentRows(clock)
    sent.add(3)
    assert sent.per_second() == 3


def test_the_last_whole_second_counts_until_this_one_has_more() -> None:
    clock = Clock()
    sent = RecentRows(clock)
    sent.add(3)
    clock.now = 101.2
    assert sent.per_second() == 3
    sent.add(4)
    assert sent.per_second() == 4


def test_a_lull_counts_after_a_second() -> None:
    clock = Clock()
    sent = RecentRows(clock)
    sent.add(5)
    clock.now = 101.5
    sent.add(1)
    clock.now = 102.1
    assert sent.per_second() == 1
    clock.now = 104.0  # a whole second without a row sent in between
    assert sent.per_second() == 0
