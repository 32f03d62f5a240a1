"""The HTTP response bodies: what the read model holds, as JSON (money as two-decimal strings)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from bank_shared.http.problems import FieldLocation
from bank_shared.money import format_money

ID_RULE = "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
TRANSFER_STATUSES = ("started", "debited", "completed", "failed")
TransferStatus = Literal["started", "debited", "completed", "failed"]

# Out of the read database money is exact already (numeric(17,2)): only its JSON form is set.
MoneyText = Annotated[
    Decimal,
    PlainSerializer(format_money, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^-?[0-9]+\.[0-9]{2}$",
            "description": "Euros as a string with exactly two decimals.",
            "examples": ["10.50"],
        }
    ),
]


def utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, whatever zone the database session used."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    PlainSerializer(utc_text, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601, UTC.",
            "examples": ["2026-01-15T09:30:00.123456Z"],
        }
    ),
]


class Account(BaseModel):
    """An account as the read model knows it: its balance after `version` events."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "account_id": "alice",
                    "owner": "Alice",
                    "balance": "100.00",
                    "version": 3,
                    "opened_at": "2026-01-15T09:30:00Z",
                    "updated_at": "2026-01-15T10:02:11.5Z",
                }
            ]
        },
    )

    account_id: str = Field(description="The account's id.", examples=["alice"])
    owner: str = Field(description="The account holder's name.", examples=["Alice"])
    balance: MoneyText = Field(description="The balance in euros.", examples=["100.00"])
    version: int = Field(
        description="How many of the account's events the read model has applied (1 after"
        " opening). Compare with the `version` the command API answered; pass it as"
        " `min_version` to read your own write.",
        examples=[3],
    )
    opened_at: Timestamp = Field(description="When the account was opened (UTC).")
    updated_at: Timestamp = Field(description="When its latest event happened (UTC).")


class AccountPage(BaseModel):
    """One page of accounts, oldest first, and how many there are in all."""

    items: list[Account] = Field(description="At most `limit` accounts, from `offset` on.")
    total: int = Field(
        description="How many accounts there are in all (that you may read).", examples=[1]
    )


class AccountActivity(BaseModel):
    """One event of an account: what changed and the balance after it."""

    model_config = ConfigDict(frozen=True)

    version: int = Field(description="The event's version in the account's stream.", examples=[2])
    type: str = Field(
        description="The event: `AccountOpened`, `MoneyDeposited` or `MoneyWithdrawn`.",
        examples=["MoneyDeposited"],
    )
    amount: MoneyText = Field(
        description="The money it moved (for `AccountOpened`, the opening balance).",
        examples=["25.00"],
    )
    balance_after: MoneyText = Field(
        description="The account's balance after the event.", examples=["125.00"]
    )
    transfer_id: str | None = Field(
        description="The transfer it was part of, or null for a plain deposit or withdrawal.",
        examples=["t-2026-0001"],
    )
    description: str | None = Field(
        default=None,
        description="What its transfer was for, as the sender typed it; null for a plain"
        " deposit or withdrawal, or a transfer sent without one.",
        examples=["Rent for March"],
    )
    occurred_at: Timestamp = Field(description="When it happened (UTC).")


class AccountHistory(BaseModel):
    """An account's events, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "version": 2,
                            "type": "MoneyDeposited",
                            "amount": "25.00",
                            "balance_after": "125.00",
                            "transfer_id": "t-2026-0001",
                            "description": "Rent for March",
                            "occurred_at": "2026-01-15T10:02:11.5Z",
                        },
                        {
                            "version": 1,
                            "type": "AccountOpened",
                            "amount": "100.00",
                            "balance_after": "100.00",
                            "transfer_id": None,
                            "description": None,
                            "occurred_at": "2026-01-15T09:30:00Z",
                        },
                    ]
                }
            ]
        }
    )

    items: list[AccountActivity] = Field(description="At most `limit` events, newest first.")


class Transfer(BaseModel):
    """A transfer and how far the saga has taken it."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": "t-2026-0001",
                    "source_account_id": "alice",
                    "source_owner": "Alice",
                    "target_account_id": "bob",
                    "target_owner": "Bob",
                    "amount": "25.00",
                    "description": "Rent for March",
                    "status": "completed",
                    "reason": None,
                    "refunded": False,
                    "started_at": "2026-01-15T10:02:11Z",
                    "debited_at": "2026-01-15T10:02:11.2Z",
                    "finished_at": "2026-01-15T10:02:11.4Z",
                },
                {
                    "transfer_id": "t-2026-0002",
                    "source_account_id": "alice",
                    "source_owner": "Alice",
                    "target_account_id": "nobody",
                    "target_owner": None,
                    "amount": "5.00",
                    "description": None,
                    "status": "failed",
                    "reason": "target_account_not_found",
                    "refunded": True,
                    "started_at": "2026-01-15T10:05:00Z",
                    "debited_at": "2026-01-15T10:05:00.2Z",
                    "finished_at": "2026-01-15T10:05:00.6Z",
                },
            ]
        },
    )

    transfer_id: str = Field(description="The transfer's id.", examples=["t-2026-0001"])
    source_account_id: str = Field(description="The account the money leaves.", examples=["alice"])
    source_owner: str | None = Field(
        default=None,
        description="The source account's holder; null when the read model does not have that"
        " account (yet), or for a customer when it is not theirs.",
        examples=["Alice"],
    )
    target_account_id: str = Field(description="The account the money goes to.", examples=["bob"])
    target_owner: str | None = Field(
        default=None,
        description="The target account's holder; null when the read model does not have that"
        " account: not yet, or never (a transfer to an account that does not exist); and for a"
        " customer when it is not theirs.",
        examples=["Bob"],
    )
    amount: MoneyText = Field(description="The money it moves.", examples=["25.00"])
    description: str | None = Field(
        default=None,
        description="What the transfer is for, as its sender typed it (at most 140"
        " characters); null if none was given.",
        examples=["Rent for March"],
    )
    status: TransferStatus = Field(
        description="`started` (accepted, nothing moved yet), `debited` (the source was"
        " debited, the deposit is on its way), `completed` (the target was credited) or"
        " `failed` (over without moving money; see `reason`).",
        examples=["completed"],
    )
    reason: str | None = Field(
        description="Why it failed: `insufficient_funds`, `source_account_not_found`,"
        " `target_account_not_found` (the source was refunded), `invalid_amount` or"
        " `refund_refused`; null unless `failed`.",
        examples=["insufficient_funds"],
    )
    refunded: bool = Field(
        description="True when the source had been debited and got the money back.",
        examples=[False],
    )
    started_at: Timestamp = Field(description="When the transfer started (UTC).")
    debited_at: Timestamp | None = Field(
        default=None,
        description="When the source was debited (UTC); null if it never was. With"
        " `started_at` and `finished_at` it is the transfer's timeline.",
    )
    finished_at: Timestamp | None = Field(
        description="When it completed or failed (UTC); null while it is in progress."
    )


class TransferPage(BaseModel):
    """One page of transfers, newest first, and how many match in all."""

    items: list[Transfer] = Field(description="At most `limit` transfers, from `offset` on.")
    total: int = Field(
        description="How many transfers match the filters (of those you may read).", examples=[1]
    )


class Readiness(BaseModel):
    """Whether the service can answer queries, and each dependency's state."""

    status: Literal["ready", "not_ready", "starting"] = Field(
        description="`ready` when every check is ok.", examples=["ready"]
    )
    checks: dict[str, str] = Field(
        description='"ok", or what is wrong: `postgres` (reachable), `read_model` (its tables'
        " exist).",
        examples=[{"postgres": "ok", "read_model": "ok"}],
    )


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = Field(description="Always `ok`.", examples=["ok"])


class FieldProblem(BaseModel):
    """One invalid parameter of a request."""

    field: str = Field(description="The query or path parameter.", examples=["limit"])
    location: FieldLocation = Field(description="Where the parameter was sent.", examples=["query"])
    message: str = Field(
        description="What is wrong and what to send instead.",
        examples=["must be at most 500; ask for fewer and page with offset"],
    )
    type: str = Field(description="The validator's error type.", examples=["less_than_equal"])


class Problem(BaseModel):
    """An RFC 9457 problem: `code` is for programs, `message` says what to do instead."""

    type: str = Field(default="about:blank", description="Always `about:blank`.")
    title: str = Field(description="The HTTP status phrase.", examples=["Not Found"])
    status: int = Field(description="The HTTP status code.", examples=[404])
    code: str = Field(description="Machine-readable, snake_case.", examples=["account_not_found"])
    message: str = Field(
        description="What went wrong and what to do instead.",
        examples=["There is no account 'alice'. Open it with POST /accounts on the command API."],
    )
    account_id: str | None = Field(default=None, description="The account asked for.")
    transfer_id: str | None = Field(default=None, description="The transfer asked for.")
    min_version: int | None = Field(
        default=None, description="not_yet_projected: the version asked for."
    )
    version: int | None = Field(
        default=None,
        description="not_yet_projected: the version the read model has (absent when the"
        " account is not in it yet).",
    )
    errors: list[FieldProblem] | None = Field(
        default=None, description="Each invalid parameter (validation errors only)."
    )


def dump(model: BaseModel) -> dict[str, Any]:
    body: dict[str, Any] = model.model_dump(mode="json")
    return body
