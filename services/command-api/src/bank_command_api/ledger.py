"""The `commands` table: each command this API sent, and the decision the write side made."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, cast
from uuid import UUID

import asyncpg

from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.db import Connection

# Every API instance LISTENs here; the instance that consumes an outcome NOTIFYs all of them.
DECIDED_CHANNEL = "bank_command_decided"

Status = Literal["pending", "accepted", "rejected"]
# NOTIFY payloads are limited to 8000 bytes; a rejection reason is a sentence, cut it anyway.
MAX_REASON = 1000


@dataclass(frozen=True)
class CommandRecord:
    command_id: UUID
    command_type: str
    stream_id: str
    status: Status = "pending"
    code: str | None = None
    reason: str | None = None
    version: int | None = None
    balance: Decimal | None = None
    # Who sent it, and for an OpenAccount whose account it opens (None in a notification).
    subject: str | None = None
    owned_by: str | None = None

    @property
    def decided(self) -> bool:
        return self.status != "pending"

    @classmethod
    def from_json(cls, text: str) -> CommandRecord:
        data = json.loads(text)
        balance = data.get("balance")
        return cls(
            command_id=UUID(data["command_id"]),
            command_type=data["command_type"],
            stream_id=data["stream_id"],
            status=data["status"],
            code=data.get("code"),
            reason=data.get("reason"),
            version=data.get("version"),
            balance=None if balance is None else Decimal(balance),
        )


def _record(row: asyncpg.Record) -> CommandRecord:
    return CommandRecord(
        command_id=row["command_id"],
        command_type=row["command_type"],
        stream_id=row["stream_id"],
        status=cast(Status, row["status"]),
        code=row["code"],
        reason=row["reason"],
        version=row["version"],
        balance=row["balance"],
        subject=row.get("subject"),
    )


def insert_commands(records: Sequence[CommandRecord]) -> tuple[str, tuple[object, ...]]:
    """The commands' rows, as a write to go in the statement that writes their outbox rows."""
    return (
        "INSERT INTO commands (command_id, command_type, stream_id, subject, owned_by)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])",
        (
            [r.command_id for r in records],
            [r.command_type for r in records],
            [r.stream_id for r in records],
            [r.subject for r in records],
            [r.owned_by for r in records],
        ),
    )


async def load_command(conn: Connection, command_id: UUID) -> CommandRecord | None:
    row = await conn.fetchrow(
        "SELECT command_id, command_type, stream_id, status, code, reason, version, balance,"
        " subject FROM commands WHERE command_id = $1",
        command_id,
    )
    return None if row is None else _record(row)


async def opened_for(conn: Connection, account_id: str, subject: str) -> bool:
    """Whether this API opened the account for the subject (and the accounts service
    accepted it). The accounts service decides every debit; this lets the API refuse a
    customer's transfer from an account that is not theirs before anything is written."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM commands WHERE command_type = 'OpenAccount'"
        " AND status = 'accepted' AND stream_id = $1 AND owned_by = $2)",
        account_id,
        subject,
    )
    return found


async def load_decided(conn: Connection, command_ids: Iterable[UUID]) -> list[CommandRecord]:
    rows = await conn.fetch(
        "SELECT command_id, command_type, stream_id, status, code, reason, version, balance"
        " FROM commands"
        " WHERE command_id = ANY($1::uuid[]) AND status <> 'pending'",
        list(command_ids),
    )
    return [_record(r) for r in rows]


async def record_decisions(
    conn: Connection, outcomes: Sequence[CommandOutcome]
) -> list[CommandRecord]:
    """Store the outcomes of pending commands and NOTIFY each decision, in one statement:
    atomic on its own, so the notifications go out only if the decisions commit, and one
    round trip per batch (no BEGIN, no COMMIT, no second statement for the NOTIFY).

    Outcomes of commands this API did not send (the saga's steps) match no row; a redelivered
    outcome finds its command decided already. Both change nothing and notify nobody.
    """
    first: dict[UUID, CommandOutcome] = {}
    for outcome in outcomes:
        first.setdefault(outcome.command_id, outcome)
    if not first:
        return []
    chosen = list(first.values())
    # The payload, built by PostgreSQL, is what CommandRecord.from_json reads (balance
    # numeric(18, 2) as text is the two-decimal string; the reason cut to MAX_REASON).
    rows = await conn.fetch(
        "WITH decided AS (UPDATE commands c SET status = d.status, code = d.code,"
        " reason = d.reason,"
        " version = d.version, balance = d.balance, outcome = d.outcome::jsonb,"
        " decided_at = now()"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[],"
        " $6::numeric[], $7::text[])"
        " AS d(command_id, status, code, reason, version, balance, outcome)"
        " WHERE c.command_id = d.command_id AND c.status = 'pending'"
        " RETURNING c.command_id, c.command_type, c.stream_id, c.status, c.code, c.reason,"
        " c.version, c.balance)"
        " SELECT *, pg_notify($8, json_build_object('command_id', command_id,"
        " 'command_type', command_type, 'stream_id', stream_id, 'status', status,"
        " 'code', code, 'reason', left(reason, $9), 'version', version,"
        " 'balance', balance::text)::text) FROM decided",
        [o.command_id for o in chosen],
        [o.status for o in chosen],
        [o.code for o in chosen],
        [o.reason for o in chosen],
        [o.version for o in chosen],
        [o.balance for o in chosen],
        [o.model_dump_json() for o in chosen],
        DECIDED_CHANNEL,
        MAX_REASON,
    )
    return [_record(r) for r in rows]
