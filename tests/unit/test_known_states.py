"""The states a handler last knew: all or nothing for a batch, the least recently used go
first, a forgotten key is read again, and a capacity of 0 (the services' setting) keeps none."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bank_accounts.settings import AccountsSettings
from bank_shared.eventstore.known import KnownStates
from bank_transfers_saga.settings import SagaSettings


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


def test_a_capacity_of_zero_keeps_nothing() -> None:
    known: KnownStates[str, int] = KnownStates(capacity=0)
    known.remember({"a": 1})
    assert not known.enabled
    assert len(known) == 0
    assert known.all_of(["a"]) is None
    assert KnownStates[str, int](capacity=1).enabled


def test_each_service_reads_how_many_states_it_keeps_from_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANK_ACCOUNTS_KNOWN_ACCOUNTS", "0")
    monkeypatch.setenv("BANK_SAGA_KNOWN_TRANSFERS", "250")
    assert AccountsSettings().known_accounts == 0
    assert SagaSettings().known_transfers == 250


@pytest.mark.parametrize(
    ("variable", "settings"),
    [
        ("BANK_ACCOUNTS_KNOWN_ACCOUNTS", AccountsSettings),
        ("BANK_SAGA_KNOWN_TRANSFERS", SagaSettings),
    ],
)
def test_a_negative_number_of_known_states_is_refused_with_the_setting_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, settings: type[AccountsSettings | SagaSettings]
) -> None:
    monkeypatch.setenv(variable, "-1")
    with pytest.raises(ValidationError, match=variable.split("_", 2)[2].lower()):
        settings()
