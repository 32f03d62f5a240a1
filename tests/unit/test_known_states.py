"""The states a service last knew: the least recently used go first, an older version never
replaces a newer one, a forgotten key is read again, and a capacity of 0 keeps none."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bank_accounts.settings import AccountsSettings
from bank_shared.eventstore.known import KnownStates
from bank_transfers_saga.settings import SagaSettings


def test_only_the_known_keys_are_given() -> None:
    known: KnownStates[str, int] = KnownStates()
    known.remember({"a": 1, "b": 2})
    assert known.any_of(["a", "b"]) == {"a": 1, "b": 2}
    assert known.any_of(["a", "c"]) == {"a": 1}


def test_the_least_recently_used_are_dropped_beyond_the_capacity() -> None:
    known: KnownStates[str, int] = KnownStates(capacity=2)
    known.remember({"a": 1, "b": 2})
    known.any_of(["a"])  # used: "b" is now the oldest
    known.remember({"c": 3})
    assert len(known) == 2
    assert known.any_of(["a", "b", "c"]) == {"a": 1, "c": 3}


def test_a_remembered_state_replaces_the_old_one_and_a_forgotten_one_is_gone() -> None:
    known: KnownStates[str, int] = KnownStates()
    known.remember({"a": 1})
    known.remember({"a": 2})
    assert known.any_of(["a"]) == {"a": 2}
    known.forget(["a", "never-known"])
    assert known.any_of(["a"]) == {}
    assert len(known) == 0


def test_an_older_version_never_replaces_a_newer_one() -> None:
    known: KnownStates[str, tuple[str, int]] = KnownStates(version=lambda value: value[1])
    known.remember({"a": ("newer", 5)})
    known.remember({"a": ("older", 4)})
    assert known.any_of(["a"]) == {"a": ("newer", 5)}


def test_a_capacity_of_zero_keeps_nothing_and_a_negative_one_is_refused() -> None:
    known: KnownStates[str, int] = KnownStates(capacity=0)
    known.remember({"a": 1})
    assert not known.enabled
    assert len(known) == 0
    assert KnownStates[str, int](capacity=1).enabled
    with pytest.raises(ValueError, match="capacity"):
        KnownStates[str, int](capacity=-1)


@pytest.mark.parametrize(
    ("variable", "settings"),
    [("BANK_ACCOUNTS_KNOWN_STREAMS", AccountsSettings), ("BANK_SAGA_KNOWN_STREAMS", SagaSettings)],
)
def test_each_service_reads_how_many_states_it_keeps_from_its_settings(
    monkeypatch: pytest.MonkeyPatch, variable: str, settings: type[AccountsSettings | SagaSettings]
) -> None:
    monkeypatch.setenv(variable, "250")
    assert settings().known_streams == 250
    monkeypatch.setenv(variable, "-1")
    with pytest.raises(ValidationError, match="known_streams"):
        settings()


@pytest.mark.parametrize(
    ("old", "new", "settings"),
    [
        ("BANK_ACCOUNTS_KNOWN_ACCOUNTS", "BANK_ACCOUNTS_KNOWN_STREAMS", AccountsSettings),
        ("BANK_SAGA_KNOWN_TRANSFERS", "BANK_SAGA_KNOWN_STREAMS", SagaSettings),
    ],
)
def test_the_name_the_setting_had_before_is_still_read_and_the_new_one_wins(
    monkeypatch: pytest.MonkeyPatch,
    old: str,
    new: str,
    settings: type[AccountsSettings | SagaSettings],
) -> None:
    """A deployment that keeps no states (for a database that can fail over) set the old
    name to 0: an upgrade must not quietly keep 10,000 again."""
    monkeypatch.setenv(old, "0")
    assert settings().known_streams == 0
    monkeypatch.setenv(new, "7")
    assert settings().known_streams == 7
