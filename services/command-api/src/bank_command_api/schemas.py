"""The HTTP request and response bodies, with the rules a request must meet before it is sent."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from bank_shared.contracts.actors import Subject
from bank_shared.http.problems import FieldLocation
from bank_shared.ids import StreamName
from bank_shared.money import SEND_INSTEAD, ZERO, Money, format_money, parse_money
from bank_shared.text import DESCRIPTION_MAX_LENGTH, Description, PersonName

# A pydantic-style error, as RequestValidationError carries them.
ErrorDetail = dict[str, Any]


def _request_money(value: Any) -> Decimal:
    try:
        return parse_money(value)
    except ValueError as error:
        text = str(error)
        # Every refusal says what to send instead, the "too large" one included.
        raise ValueError(text if SEND_INSTEAD in text else f"{text}; {SEND_INSTEAD}") from None


def _positive(amount: Decimal) -> Decimal:
    if amount <= ZERO:
        raise ValueError(f"{format_money(amount)} is not more than zero; {SEND_INSTEAD}")
    return amount


def _not_negative(amount: Decimal) -> Decimal:
    if amount < ZERO:
        raise ValueError(f"{format_money(amount)} is negative; {SEND_INSTEAD}, or 0")
    return amount


def _amount_schema(description: str, minimum: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,2})?$"},
                {"type": "integer", "minimum": minimum},
            ],
            "description": description,
            "examples": ["10.50"],
        },
        mode="validation",
    )


_as_text = PlainSerializer(format_money, return_type=str, when_used="json")

PositiveAmount = Annotated[
    Decimal,
    BeforeValidator(_request_money),
    AfterValidator(_positive),
    _as_text,
    _amount_schema(
        "Euros, more than zero: a string with at most two decimals or an integer. Floats,"
        " exponents, NaN and amounts above the configured maximum are refused.",
        minimum=1,
    ),
]
OpeningBalance = Annotated[
    Decimal,
    BeforeValidator(_request_money),
    AfterValidator(_not_negative),
    _as_text,
    _amount_schema("Euros, zero or more, like `amount`.", minimum=0),
]

ID_RULE = "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"


def ceiling_errors(amounts: dict[str, Decimal], max_amount: Decimal) -> list[ErrorDetail]:
    """The configured maximum is a setting, not a type: checked after parsing, reported alike."""
    return [
        {
            "type": "value_error",
            "loc": ("body", name),
            "msg": f"{format_money(value)} is above the maximum of {format_money(max_amount)}"
            f" per command; {SEND_INSTEAD}",
            "input": format_money(value),
        }
        for name, value in amounts.items()
        if value > max_amount
    ]


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def problems(self, max_amount: Decimal) -> list[ErrorDetail]:
        return []

    def fingerprint_body(self) -> dict[str, Any]:
        """The validated body, as the Idempotency-Key's fingerprint covers it."""
        body: dict[str, Any] = self.model_dump(mode="json")
        return body


class OpenAccountRequest(CommandRequest):
    """Open an account, optionally with money in it from the start."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"owner": "Alice Liddell"},
                {"owner": "Bob Smith", "initial_balance": 50, "owned_by": "bob"},
            ]
        }
    )

    owner: PersonName = Field(
        description="The account holder's name: 1-200 characters, kept in Unicode NFC. Control,"
        " invisible and text-direction characters are refused (docs/command-api.md)."
    )
    initial_balance: OpeningBalance = Field(
        default=ZERO,
        description="Money in the account from the start (default 0.00). Tellers only.",
    )
    account_id: StreamName | None = Field(
        default=None,
        description=f"The new account's id ({ID_RULE}). Left out, a new UUID is chosen."
        " Tellers only.",
        examples=["alice"],
    )
    owned_by: Subject | None = Field(
        default=None,
        description="The login that will own it. Left out, the caller's. Tellers only, for"
        " someone else.",
        examples=["alice"],
    )

    def problems(self, max_amount: Decimal) -> list[ErrorDetail]:
        return ceiling_errors({"initial_balance": self.initial_balance}, max_amount)


class AmountRequest(CommandRequest):
    """Money to deposit into or withdraw from an account."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"amount": "10.50"}]})

    amount: PositiveAmount = Field(description='Euros, e.g. "10.50" (or an integer).')

    def problems(self, max_amount: Decimal) -> list[ErrorDetail]:
        return ceiling_errors({"amount": self.amount}, max_amount)


class TransferRequest(CommandRequest):
    """Move money from one account to another (a saga: withdraw, deposit, refund on failure)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source_account_id": "alice",
                    "target_account_id": "bob",
                    "amount": "25.00",
                    "description": "Rent for March",
                },
                {"source_account_id": "alice", "target_account_id": "bob", "amount": "25.00"},
            ]
        }
    )

    source_account_id: StreamName = Field(description="The account the money leaves.")
    target_account_id: StreamName = Field(description="The account the money goes to.")
    amount: PositiveAmount = Field(description='Euros, e.g. "10.50" (or an integer).')
    transfer_id: StreamName | None = Field(
        default=None,
        description=f"The transfer's id ({ID_RULE}). Left out, a new UUID is chosen.",
    )
    description: Description | None = Field(
        default=None,
        description=f"What the transfer is for, as both account holders will read it: 1-"
        f"{DESCRIPTION_MAX_LENGTH} characters after trimming, kept in Unicode NFC; the same"
        " characters as an owner's name are refused (docs/command-api.md). Null or left out:"
        " none.",
        examples=["Rent for March"],
    )

    def fingerprint_body(self) -> dict[str, Any]:
        # Without a description, the body a key was bound to before transfers had one: a
        # retry across the upgrade is still the same request.
        body = super().fingerprint_body()
        if body["description"] is None:
            del body["description"]
        return body

    def problems(self, max_amount: Decimal) -> list[ErrorDetail]:
        found = ceiling_errors({"amount": self.amount}, max_amount)
        if self.source_account_id == self.target_account_id:
            found.append(
                {
                    "type": "value_error",
                    "loc": ("body", "target_account_id"),
                    "msg": "the target is the source account; a transfer needs two different"
                    " accounts (to add or take money use /deposits or /withdrawals)",
                    "input": self.target_account_id,
                }
            )
        return found


# --- responses --------------------------------------------------------------------------------

CommandId = Annotated[UUID, Field(description="The command's id: GET /commands/{command_id}.")]


class AccessToken(BaseModel):
    """What `POST /token` answers (RFC 6749, section 5.1)."""

    access_token: str = Field(description="Send it as `Authorization: Bearer <access_token>`.")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a token type, not a secret)
    expires_in: int = Field(description="Seconds until it expires; then log in again.")


class AccountCommandAccepted(BaseModel):
    """The account command was accepted; the account is now at `version` with `balance`."""

    account_id: str = Field(description="The account.", examples=["alice"])
    command_id: CommandId
    status: Literal["accepted"] = "accepted"
    version: int = Field(description="The account's version after the command.", examples=[1])
    balance: Money = Field(description="The balance after the command.", examples=["100.00"])


class TransferAccepted(BaseModel):
    """The transfer was started; follow it at the `Location` (query API)."""

    transfer_id: str = Field(description="The transfer.", examples=["t-2026-0001"])
    command_id: CommandId
    status: Literal["accepted"] = "accepted"


class CommandPending(BaseModel):
    """Sent, not decided yet (or the client asked not to wait): poll the `Location`."""

    command_id: CommandId
    status: Literal["pending"] = "pending"
    account_id: str | None = Field(default=None, description="For account commands.")
    transfer_id: str | None = Field(default=None, description="For transfers.")


class CommandStatus(BaseModel):
    """A command sent through this API and what became of it."""

    command_id: CommandId
    command_type: str = Field(examples=["DepositMoney"])
    stream_id: str = Field(description="The account or transfer it addressed.")
    status: Literal["pending", "accepted", "rejected"]
    code: str | None = Field(
        default=None, description="Why it was rejected, e.g. insufficient_funds."
    )
    reason: str | None = Field(default=None, description="The write side's explanation.")
    version: int | None = Field(default=None, description="The stream's version after it.")
    balance: Money | None = Field(default=None, description="The account's balance after it.")


class FieldProblem(BaseModel):
    field: str = Field(description="The field, header or path parameter.", examples=["amount"])
    location: FieldLocation
    message: str = Field(description="What is wrong and what to send instead.")
    type: str = Field(description="The validator's error type.", examples=["value_error"])


class Problem(BaseModel):
    """An RFC 9457 problem: `code` is for programs, `message` says what to do instead."""

    type: str = "about:blank"
    title: str = Field(examples=["Conflict"])
    status: int = Field(examples=[409])
    code: str = Field(description="Machine-readable, snake_case.", examples=["insufficient_funds"])
    message: str = Field(description="What went wrong and what to do instead.")
    detail: str | None = Field(default=None, description="The write side's own explanation.")
    command_id: UUID | None = None
    account_id: str | None = None
    transfer_id: str | None = None
    errors: list[FieldProblem] | None = Field(
        default=None, description="Each invalid field (validation errors only)."
    )
