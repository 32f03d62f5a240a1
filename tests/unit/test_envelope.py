"""The wire envelope: sealing, bytes and back; unreadable input is named; ids and stream names."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from bank_shared.contracts.accounts import (
    AccountOpened,
    DepositMoney,
    MoneyWithdrawn,
    OpenAccount,
)
from bank_shared.contracts.envelope import (
    Envelope,
    Message,
    UnreadableMessageError,
    open_envelope,
    seal,
    to_bytes,
)
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.ids import StreamName, derived_id

MESSAGE_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
CORRELATION_ID = uuid.UUID("00000000-0000-4000-8000-000000000002")
CAUSATION_ID = uuid.UUID("00000000-0000-4000-8000-000000000003")
OCCURRED_AT = datetime(2024, 5, 17, 12, 30, 15, 123456, tzinfo=UTC)


def sealed(message: Message, **where: Any) -> Envelope:
    return seal(
        message,
        message_id=MESSAGE_ID,
        correlation_id=CORRELATION_ID,
        causation_id=CAUSATION_ID,
        occurred_at=OCCURRED_AT,
        **where,
    )


def wire(envelope: Envelope, **payload_changes: Any) -> dict[str, Any]:
    """The envelope as a JSON-ready dict, with payload fields replaced (or removed by None)."""
    document: dict[str, Any] = json.loads(to_bytes(envelope))
    for key, value in payload_changes.items():
        if value is None:
            document["payload"].pop(key, None)
        else:
            document["payload"][key] = value
    return document


def as_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


DEPOSIT = DepositMoney(account_id="alice", amount=Decimal("10.50"), transfer_id="t-1")


# --- round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        DEPOSIT,
        OpenAccount(account_id="bob", owner="Bob Smith", owned_by="bob"),
        AccountOpened(
            account_id="bob",
            owner="Bob",
            owned_by="bob",
            initial_balance=Decimal("0.00"),
            balance_after=Decimal("0.00"),
        ),
        MoneyWithdrawn(
            account_id="alice",
            amount=Decimal("1.01"),
            balance_after=Decimal("9.49"),
            description=None,
        ),
        CommandOutcome(
            command_id=MESSAGE_ID,
            command_type="DepositMoney",
            stream_id="alice",
            status="accepted",
            version=3,
            balance=Decimal("19.99"),
        ),
    ],
    ids=lambda message: type(message).__name__,
)
def test_a_sealed_message_survives_the_wire_unchanged(message: Message) -> None:
    envelope = sealed(message, stream_id="alice", stream_version=7)

    opened_envelope, payload = open_envelope(to_bytes(envelope))

    assert opened_envelope == envelope
    assert payload == message
    assert type(payload) is type(message)


def test_the_envelope_records_type_ids_and_place() -> None:
    envelope, _ = open_envelope(to_bytes(sealed(DEPOSIT, stream_id="alice", stream_version=2)))

    assert envelope.type == "DepositMoney"
    assert envelope.message_id == MESSAGE_ID
    assert envelope.correlation_id == CORRELATION_ID
    assert envelope.causation_id == CAUSATION_ID
    assert envelope.occurred_at == OCCURRED_AT
    assert envelope.stream_id == "alice"
    assert envelope.stream_version == 2
    assert envelope.schema_version == DepositMoney.SCHEMA_VERSION


def test_money_travels_as_a_string_and_comes_back_as_a_decimal() -> None:
    raw = to_bytes(sealed(DEPOSIT))

    assert json.loads(raw)["payload"]["amount"] == "10.50"
    _, payload = open_envelope(raw)
    assert isinstance(payload, DepositMoney)
    assert isinstance(payload.amount, Decimal)
    assert payload.amount == Decimal("10.50")
    assert payload.transfer_id == "t-1"


def test_sealing_refuses_a_time_without_a_zone() -> None:
    with pytest.raises(ValidationError):
        seal(
            DEPOSIT,
            message_id=MESSAGE_ID,
            correlation_id=CORRELATION_ID,
            causation_id=None,
            occurred_at=datetime(2024, 5, 17, 12, 30),
        )


# --- unreadable input ----------------------------------------------------------------------


def test_a_record_without_a_value_is_unreadable() -> None:
    with pytest.raises(UnreadableMessageError, match="empty record"):
        open_envelope(None)


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"\xff\xfe\x00", b"[]", b"null", b'{"type": "DepositMoney"}'],
    ids=["empty", "text", "binary", "array", "null", "incomplete"],
)
def test_bytes_that_are_not_an_envelope_are_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableMessageError, match="not a message envelope"):
        open_envelope(raw)


def test_an_envelope_with_a_time_without_a_zone_is_unreadable() -> None:
    document = wire(sealed(DEPOSIT))
    document["occurred_at"] = "2024-05-17T12:30:00"

    with pytest.raises(UnreadableMessageError, match="occurred_at"):
        open_envelope(as_bytes(document))


def test_an_unknown_message_type_is_unreadable_and_named() -> None:
    document = wire(sealed(DEPOSIT))
    document["type"] = "SpendEverything"

    with pytest.raises(UnreadableMessageError, match="unknown message type 'SpendEverything'"):
        open_envelope(as_bytes(document))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": 10.5}, "amount"),
        ({"amount": "10.505"}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": None}, "amount"),
        ({"account_id": None}, "account_id"),
        ({"account_id": "has space"}, "account_id"),
        ({"surprise": "field"}, "surprise"),
    ],
    ids=[
        "float-amount",
        "three-decimals",
        "exponent",
        "missing-amount",
        "missing-account",
        "bad-account",
        "unknown-field",
    ],
)
def test_an_invalid_payload_is_unreadable_and_names_the_field(
    changes: dict[str, Any], field: str
) -> None:
    raw = as_bytes(wire(sealed(DEPOSIT), **changes))

    with pytest.raises(UnreadableMessageError, match="invalid DepositMoney payload") as caught:
        open_envelope(raw)

    assert field in str(caught.value)


def test_a_float_amount_is_unreadable_with_the_money_guidance() -> None:
    raw = as_bytes(wire(sealed(DEPOSIT), amount=10.5))

    with pytest.raises(UnreadableMessageError, match=r'"10\.50"'):
        open_envelope(raw)


@pytest.mark.parametrize("amount", [10**27, "1" * 30])
def test_an_amount_beyond_decimal_precision_is_unreadable_not_a_crash(amount: int | str) -> None:
    # A consumer dead-letters UnreadableMessageError; any other exception rewinds the batch
    # and the same record comes back forever.
    raw = as_bytes(wire(sealed(DEPOSIT), amount=amount))

    try:
        _, payload = open_envelope(raw)
    except UnreadableMessageError:
        return
    assert isinstance(payload, DepositMoney)
    assert payload.amount == Decimal(amount)


def test_unreadable_message_error_is_a_value_error() -> None:
    assert issubclass(UnreadableMessageError, ValueError)


# --- derived ids ---------------------------------------------------------------------------


def test_derived_id_is_the_same_for_the_same_parts() -> None:
    assert derived_id(MESSAGE_ID, "event", 0) == derived_id(MESSAGE_ID, "event", 0)


def test_derived_id_is_a_name_based_uuid5() -> None:
    assert derived_id("transfer", "t-1").version == 5


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ((MESSAGE_ID, "event", 0), (MESSAGE_ID, "event", 1)),
        ((MESSAGE_ID, "event", 0), (CORRELATION_ID, "event", 0)),
        ((MESSAGE_ID, "event", 0), (MESSAGE_ID, "outcome")),
        (("a", "b"), ("b", "a")),
        (("a",), ("a", "")),
    ],
)
def test_derived_id_differs_for_different_parts(
    left: tuple[object, ...], right: tuple[object, ...]
) -> None:
    assert derived_id(*left) != derived_id(*right)


# --- stream names --------------------------------------------------------------------------


class Named(BaseModel):
    name: StreamName


@pytest.mark.parametrize(
    "name",
    ["alice", "a", "Bob_2", "acc.01-x", str(uuid.uuid4()), "a" * 64],
)
def test_stream_names_accept_short_readable_ids_and_uuids(name: str) -> None:
    assert Named(name=name).name == name


@pytest.mark.parametrize(
    "name",
    ["", "has space", "a" * 65, "-leading-dash", ".hidden", "a/b", "alice\n", "ünïcode"],
    ids=["empty", "space", "65-chars", "dash", "dot", "slash", "newline", "unicode"],
)
def test_stream_names_refuse_empty_long_or_odd_strings(name: str) -> None:
    with pytest.raises(ValidationError):
        Named(name=name)


def test_stream_names_refuse_non_strings() -> None:
    with pytest.raises(ValidationError):
        Named.model_validate({"name": 12345})


def test_a_message_without_a_return_address_is_written_as_before_the_field_existed() -> None:
    """An envelope forbids unknown fields, so a consumer not yet upgraded would refuse every
    message carrying `"reply_to": null`; and a stored answer must be sent again unchanged."""
    envelope = sealed(DepositMoney(account_id="alice", amount="1.00"))
    assert "reply_to" not in json.loads(to_bytes(envelope))
    parsed, _ = open_envelope(to_bytes(envelope))
    assert parsed == envelope


def test_a_return_address_travels_with_its_command() -> None:
    envelope = sealed(DepositMoney(account_id="alice", amount="1.00"), reply_to="t.outcomes")
    document = json.loads(to_bytes(envelope))
    assert document["reply_to"] == "t.outcomes"
    parsed, _ = open_envelope(to_bytes(envelope))
    assert parsed == envelope
