"""The states a handler last knew: all or nothing for a batch, the least recently used go
first, and a forgotten key is read again."""

from __future__ import annotations

from bank_shared.eventstore.known import KnownStates


def test_a_batch_gets_every_state_or_none_at_all() -> None:
    known: KnownStates[str, int] = KnownStates()
    known.remember({"a": 1, "b": 2})
    assert known.all_of(["a", "b"]) == {"a": 1, "b": 2}
    assert known.all_of(["a", "c"]) is None
    assert known.any_of(["a", "c"]) == {"a": 1}


def test_the_least_recently_used_are_dropped_beyond_the_capacity() -> None:
    known: KnownStates[str, int] = KnownStates(capacity=2)
    known.remember({"a": 1, "b": 2})
    known.all_of(["a"])  # used: "b" is now the oldest
    known.remember({"c": 3})
    assert len(known) == 2
    assert known.all_of(["b"]) is None
    assert known.all_of(["a", "c"]) == {"a": 1, "c": 3}


def test_a_remembered_state_replaces_the_old_one_and_a_forgotten_one_is_gone() -> None:
    known: KnownStates[str, int] = KnownStates()
    known.remember({"a": 1})
    known.remember({"a": 2})
    assert known.all_of(["a"]) == {"a": 2}
    known.forget(["a", "never-known"])
    assert known.all_of(["a"]) is None
    assert len(known) == 0
