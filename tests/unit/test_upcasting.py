"""Upcasting: a payload of an older schema version is brought to the current one step by step,
a missing step or a newer version is refused with a message that names it, and every version
the bank ever wrote (the corpus in tests/fixtures/payloads) is still read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar
from uuid import uuid4

import pytest

import bank_shared.contracts  # noqa: F401  (registers every message type)
from bank_accounts.account import INITIAL, evolve
from bank_shared.contracts import upcasting
from bank_shared.contracts.accounts import ACCOUNT_EVENTS
from bank_shared.contracts.actors import BANK_TELLER, TELLER
from bank_shared.contracts.envelope import (
    REGISTRY,
    Envelope,
    Message,
    UnreadableMessageError,
    current_versions,
    read_payload,
)
from bank_shared.contracts.upcasting import (
    MissingUpcasterError,
    Payload,
    unreadable_versions,
    upcast,
    upcaster,
)
from bank_shared.eventstore.snapshots import Snapshots

CORPUS = Path(__file__).parents[1] / "fixtures" / "payloads"


def corpus() -> dict[tuple[str, int], Envelope]:
    """Each file of the corpus, by (type, version) as its name says: `MoneyDeposited.v1.json`."""
    found = {}
    for path in sorted(CORPUS.glob("*.json")):
        message_type, version = path.name.removesuffix(".json").split(".v")
        found[(message_type, int(version))] = Envelope.model_validate_json(path.read_text())
    return found


# The fields each version added, as its upcaster fills them in a payload of the version
# before: the corpus files of older versions must not have them, the newer ones must.
DESCRIBED_IN_V2 = {
    "DepositMoney",
    "WithdrawMoney",
    "MoneyDeposited",
    "MoneyWithdrawn",
    "StartTransfer",
    "TransferStarted",
}
ADDED: dict[tuple[str, int], Payload] = {
    **{(t, 2): {"description": None} for t in DESCRIBED_IN_V2},
    ("OpenAccount", 2): {"owned_by": TELLER},
    ("AccountOpened", 2): {"owned_by": TELLER},
    ("TransferStarted", 3): {"requested_by": BANK_TELLER.model_dump()},
}


def added_since(message_type: str, version: int) -> Payload:
    """The fields the versions after `version` added, with the values their upcasters give."""
    added: Payload = {}
    for later in range(version + 1, current_versions()[message_type] + 1):
        added |= ADDED.get((message_type, later), {})
    return added


PAST = sorted(key for key in corpus() if key[1] < current_versions()[key[0]])


@pytest.fixture
def own_upcasters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registered chains, plus whatever a test registers, forgotten after it."""
    monkeypatch.setattr(upcasting, "UPCASTERS", dict(upcasting.UPCASTERS))


# --- the chain -------------------------------------------------------------------------------


@pytest.mark.usefixtures("own_upcasters")
def test_a_chain_runs_each_step_in_order_from_the_stored_version() -> None:
    steps: list[int] = []

    @upcaster("Ledger", 1)
    def amount_renamed(payload: Payload) -> Payload:
        steps.append(1)
        return {"amount": payload["amt"]}

    @upcaster("Ledger", 2)
    def currency_added(payload: Payload) -> Payload:
        steps.append(2)
        # Reads the field step 1 made: run in another order, this fails.
        return {**payload, "currency": "EUR", "cents": int(payload["amount"] * 100)}

    assert upcast("Ledger", 1, 3, {"amt": 1.5}) == {"amount": 1.5, "currency": "EUR", "cents": 150}
    assert steps == [1, 2]
    steps.clear()
    assert upcast("Ledger", 2, 3, {"amount": 2}) == {"amount": 2, "currency": "EUR", "cents": 200}
    assert steps == [2]
    steps.clear()
    assert upcast("Ledger", 3, 3, {"anything": True}) == {"anything": True}
    assert steps == []


@pytest.mark.usefixtures("own_upcasters")
def test_a_missing_step_is_named_and_no_step_runs() -> None:
    steps: list[int] = []

    @upcaster("Ledger", 1)
    def first(payload: Payload) -> Payload:
        steps.append(1)
        return payload

    @upcaster("Ledger", 3)
    def third(payload: Payload) -> Payload:
        steps.append(3)
        return payload

    with pytest.raises(MissingUpcasterError, match=r"Ledger schema version 2 to 3") as error:
        upcast("Ledger", 1, 4, {})
    assert '@upcaster("Ledger", 2)' in str(error.value)
    assert steps == []  # refused before anything ran, not half-way


def test_a_version_newer_than_this_code_is_refused() -> None:
    with pytest.raises(MissingUpcasterError, match=r"MoneyDeposited schema version 3 .* newer"):
        upcast("MoneyDeposited", 3, 2, {})


@pytest.mark.usefixtures("own_upcasters")
def test_a_step_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="MoneyDeposited v1 already has an upcaster"):
        upcaster("MoneyDeposited", 1)(lambda payload: payload)


# --- read_payload: what every reader of events calls ----------------------------------------


class LedgerEntry(Message):
    SCHEMA_VERSION: ClassVar[int] = 3

    amount: int
    currency: str


@pytest.mark.usefixtures("own_upcasters")
def test_read_payload_runs_the_chain_before_validating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "LedgerEntry", LedgerEntry)
    upcaster("LedgerEntry", 1)(lambda p: {"amount": p["amt"]})
    upcaster("LedgerEntry", 2)(lambda p: {**p, "currency": "EUR"})

    assert read_payload(envelope("LedgerEntry", 1, {"amt": 7})) == LedgerEntry(
        amount=7, currency="EUR"
    )
    # The current version is read as it is, without running any step.
    assert read_payload(envelope("LedgerEntry", 3, {"amount": 8, "currency": "CHF"})) == (
        LedgerEntry(amount=8, currency="CHF")
    )


def test_read_payload_refuses_an_unknown_type() -> None:
    with pytest.raises(UnreadableMessageError, match="unknown message type 'Mystery'"):
        read_payload(envelope("Mystery", 1, {}))


@pytest.mark.parametrize(
    ("version", "reason"),
    [(9, "schema version 9 was written by newer code"), (0, "schema version 0 to 1")],
)
def test_read_payload_refuses_a_version_no_chain_reaches(version: int, reason: str) -> None:
    v2 = corpus()[("MoneyDeposited", 2)]
    with pytest.raises(UnreadableMessageError, match=reason):
        read_payload(v2.model_copy(update={"schema_version": version}))


@pytest.mark.parametrize(
    ("message_type", "version", "field"),
    [
        ("MoneyDeposited", 1, "description"),
        ("OpenAccount", 1, "owned_by"),
        ("AccountOpened", 1, "owned_by"),
        ("TransferStarted", 2, "requested_by"),
    ],
)
def test_a_payload_without_the_field_its_next_version_added_is_refused_as_that_version(
    message_type: str, version: int, field: str
) -> None:
    """Proof that the old files below are read through the chain: sent as the next version,
    they fail on the field it added, instead of reading as a default."""
    old = corpus()[(message_type, version)]
    with pytest.raises(UnreadableMessageError, match=field):
        read_payload(old.model_copy(update={"schema_version": version + 1}))


@pytest.mark.parametrize(("message_type", "version"), PAST)
def test_each_past_payload_of_the_corpus_is_read_as_the_current_model(
    message_type: str, version: int
) -> None:
    old = corpus()[(message_type, version)]
    stored = json.loads(old.model_dump_json())["payload"]

    message = read_payload(old)

    assert isinstance(message, REGISTRY[message_type])
    # Every stored field kept, and the fields added since as their upcasters fill them (no
    # description, the teller's): the same message as the current payload with those.
    added = added_since(message_type, version)
    assert added
    assert message.model_dump(mode="json") == {**stored, **added}
    # The corpus holds the same message at each version: read from an old one, it is the
    # current one without what the old version could not hold.
    current = corpus()[(message_type, current_versions()[message_type])].payload
    assert message == REGISTRY[message_type].model_validate({**current, **added})
    assert old.payload == stored  # the stored payload itself is never changed by reading it


@pytest.mark.parametrize("message_type", sorted(current_versions()))
def test_each_current_payload_of_the_corpus_is_read_as_it_is(
    message_type: str,
) -> None:
    stored = corpus()[(message_type, current_versions()[message_type])]

    message = read_payload(stored)

    assert message.model_dump(mode="json") == json.loads(stored.model_dump_json())["payload"]


# --- the corpus itself -----------------------------------------------------------------------


def test_the_corpus_holds_every_version_of_every_registered_type() -> None:
    """A new schema version must come with a file of the version it replaces (what the store
    and the topics still hold), so that the chain is tested on it."""
    expected = {(t, v) for t, current in current_versions().items() for v in range(1, current + 1)}

    assert set(corpus()) == expected


@pytest.mark.parametrize(("message_type", "version"), sorted(corpus()))
def test_each_corpus_file_is_the_type_and_version_its_name_says(
    message_type: str, version: int
) -> None:
    stored = corpus()[(message_type, version)]

    assert (stored.type, stored.schema_version) == (message_type, version)
    for (added_to, since), fields in ADDED.items():
        if added_to == message_type:
            assert all((name in stored.payload) == (version >= since) for name in fields)


# --- the start-up check ----------------------------------------------------------------------


def test_every_version_in_the_corpus_is_readable() -> None:
    assert unreadable_versions(corpus(), current_versions()) == []


def test_unreadable_versions_names_each_problem_once() -> None:
    found = [
        ("MoneyDeposited", 1),
        ("MoneyDeposited", 9),
        ("MoneyDeposited", 9),
        ("Mystery", 1),
        ("AccountOpened", 1),
    ]

    problems = unreadable_versions(found, current_versions())

    assert len(problems) == 2
    assert "MoneyDeposited schema version 9 was written by newer code" in problems[0]
    assert "reads up to 2" in problems[0]
    assert problems[1] == "Mystery is a type this code does not know"


@pytest.mark.usefixtures("own_upcasters")
def test_unreadable_versions_names_a_missing_step() -> None:
    upcaster("Ledger", 2)(lambda payload: payload)

    assert unreadable_versions([("Ledger", 2), ("Ledger", 3)], {"Ledger": 3}) == []
    [problem] = unreadable_versions([("Ledger", 1)], {"Ledger": 3})
    assert "no upcaster from Ledger schema version 1 to 2" in problem


def envelope(message_type: str, version: int, payload: Payload) -> Envelope:
    return Envelope(
        message_id=uuid4(),
        correlation_id=uuid4(),
        occurred_at=datetime.now(UTC),
        type=message_type,
        schema_version=version,
        payload=payload,
    )


def test_a_changed_upcaster_changes_the_fingerprint_of_snapshots(own_upcasters: None) -> None:
    """A fold reads old events through the upcasters: a snapshot folded through another
    upcaster may hold another state, so it must not be trusted."""

    def fingerprint() -> str:
        return Snapshots(INITIAL, evolve, ACCOUNT_EVENTS, every=10).fingerprint

    before = fingerprint()
    assert fingerprint() == before
    upcasting.UPCASTERS[("MoneyDeposited", 1)] = lambda payload: {**payload, "description": ""}
    assert fingerprint() != before
