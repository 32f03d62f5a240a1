"""Handovers: the relay sends a writer's rows as handed over only when every commit before
theirs has been accounted for; anything else makes it read the outbox."""

from __future__ import annotations

from bank_shared.eventstore.handover import Handovers
from bank_shared.eventstore.store import OutboxRow

OURS = "p1-"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rows(*ids: int) -> list[OutboxRow]:
    return [OutboxRow(i, "t", f"stream-{i}", b"x") for i in ids]


def caught_up(clock: Clock | None = None) -> Handovers:
    """As after a leadership's first read, which found nothing."""
    handovers = Handovers(OURS, wait=0.1, clock=clock or Clock())
    assert handovers.must_read  # a new leadership reads first
    handovers.reading()
    handovers.read([], full=False)
    assert not handovers.must_read
    return handovers


def test_handed_rows_go_in_the_order_their_commits_were_heard_of() -> None:
    handovers = caught_up()
    handovers.heard(OURS + "1")
    handovers.heard(OURS + "2")
    handovers.handed(OURS + "2", rows(3, 4))
    assert not handovers.ready()  # the first commit's rows are not here yet
    assert handovers.take() == []
    handovers.handed(OURS + "1", rows(1, 2))
    assert handovers.ready()
    assert [r.id for r in handovers.take()] == [1, 2, 3, 4]
    assert not handovers.must_read


def test_rows_handed_over_before_their_notify_wait_for_it() -> None:
    handovers = caught_up()
    handovers.handed(OURS + "1", rows(1))
    assert handovers.take() == []
    handovers.heard(OURS + "1")
    assert [r.id for r in handovers.take()] == [1]


def test_another_process_commit_stops_the_handed_rows_after_it_and_asks_for_a_read() -> None:
    handovers = caught_up()
    handovers.heard(OURS + "1")
    handovers.heard("p2-7")  # another instance's commit, or one made in a transaction
    handovers.heard(OURS + "2")
    handovers.handed(OURS + "1", rows(1))
    handovers.handed(OURS + "2", rows(3))
    assert handovers.must_read
    assert [r.id for r in handovers.take()] == [1]  # committed before the other one
    assert handovers.take() == []  # row 3 only after the read, which sends it too
    handovers.reading()
    handovers.read([2, 3], full=False)
    assert handovers.take() == []
    assert not handovers.must_read


def test_rows_that_do_not_come_in_time_are_read_instead() -> None:
    clock = Clock()
    handovers = caught_up(clock)
    handovers.heard(OURS + "1")
    deadline = handovers.next_deadline()
    assert deadline == clock.now + 0.1
    clock.now += 0.05
    assert handovers.take() == []
    assert not handovers.must_read  # still within the wait
    clock.now += 0.06
    assert handovers.take() == []
    assert handovers.must_read
    handovers.reading()
    handovers.handed(OURS + "1", rows(1))  # too late: the read saw that commit
    handovers.heard(OURS + "2")
    handovers.handed(OURS + "2", rows(2))
    assert [r.id for r in handovers.take()] == [2]


def test_rows_a_read_sent_before_their_notify_came_are_not_sent_again() -> None:
    handovers = caught_up()
    handovers.reading()
    handovers.read([1, 2], full=False)  # the read saw a commit whose NOTIFY comes only now
    handovers.heard(OURS + "1")
    handovers.handed(OURS + "1", rows(1, 2, 3))
    assert [r.id for r in handovers.take()] == [3]


def test_a_read_that_reached_its_limit_asks_for_another() -> None:
    handovers = caught_up()
    handovers.reading()
    handovers.read(range(1, 501), full=True)
    assert handovers.must_read
