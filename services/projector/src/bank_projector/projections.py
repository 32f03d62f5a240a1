"""Applying account and transfer events to the read tables, exactly once and in order.

Each read row carries the version of the stream it reflects: that is the projection's
checkpoint, written in the same statement as the row. An event at or below it was applied
already (a redelivery) and changes nothing; the next one is applied; one further ahead means
an event is missing, and the batch is retried later rather than skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

import asyncpg

from bank_shared.channels import READ_MODEL_CHANNEL, notify_payloads
from bank_shared.contracts.accounts import (
    ACCOUNT_EVENTS,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
)
from bank_shared.contracts.envelope import Envelope, Message
from bank_shared.contracts.transfers import (
    TRANSFER_EVENTS,
    TransferCompleted,
    TransferCreditRefused,
    TransferDebited,
    TransferFailed,
    TransferStarted,
)
from bank_shared.db import Connection
from bank_shared.messaging.consume import RetryLater

log = logging.getLogger(__name__)

# What the projector gets: each event with its payload, read once by the consumer.
Events = Sequence[tuple[Envelope, Message]]


async def park(conn: Connection, envelope: Envelope | None, reason: str) -> None:
    """Stop following the stream of an event that cannot be applied (it went to the
    dead-letter topic): skipping it would make every later event of the stream a gap."""
    if envelope is None or envelope.stream_id is None:
        return  # not an event of any stream: nothing to stop
    await conn.execute(
        "INSERT INTO parked_streams (stream_id, version, reason) VALUES ($1, $2, $3)"
        " ON CONFLICT (stream_id) DO NOTHING",
        envelope.stream_id,
        envelope.stream_version,
        reason[:2000],
    )
    log.error(
        "parked stream %s at version %s: %s", envelope.stream_id, envelope.stream_version, reason
    )


class StreamGapError(RetryLater):
    """An event arrived before the one it follows."""


@dataclass(frozen=True)
class AccountRow:
    account_id: str
    owner: str
    owned_by: str
    balance: Decimal
    version: int
    opened_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TransferRow:
    transfer_id: str
    source_account_id: str
    target_account_id: str
    amount: Decimal
    status: str
    reason: str | None
    refunded: bool
    started_at: datetime
    finished_at: datetime | None
    version: int
    debited_at: datetime | None = None
    description: str | None = None


def _next(envelope: Envelope, version: int) -> bool:
    """True if the event is the next one of its stream; False if already applied."""
    assert envelope.stream_version is not None
    if envelope.stream_version <= version:
        return False
    if envelope.stream_version > version + 1:
        raise StreamGapError(
            f"{envelope.stream_id}: got version {envelope.stream_version}, expected {version + 1}"
        )
    return True


async def project(conn: Connection, events: Events) -> int:
    """Apply a batch of events (any order across streams, version order within one); return
    how many were new. Events of parked streams are skipped.

    Two statements per kind of stream, with or without the caller's transaction: one reads the
    rows and parked flags of the batch's streams, one writes the changed rows, their activity
    and the NOTIFY, atomically because it is one statement. Two projector instances briefly
    sharing a partition (a rebalance) cannot undo each other: both derive the same rows from the
    same events, a row is only replaced by a higher version, and activity rows are immutable
    facts keyed by (stream, version). One that read an older row before the other wrote finds
    its upsert refused by that version check."""
    accounts = [(e, m) for e, m in events if isinstance(m, ACCOUNT_EVENTS)]
    transfers = [(e, m) for e, m in events if isinstance(m, TRANSFER_EVENTS)]
    return await _project_accounts(conn, accounts) + await _project_transfers(conn, transfers)


def _streams(events: Events) -> list[str]:
    return list({e.stream_id or "" for e, _ in events})


def _parked(rows: Sequence[asyncpg.Record]) -> dict[str, int | None]:
    """Each parked stream of the batch, with the version it was parked at (None: unknown)."""
    return {r["stream_id"]: r["parked_version"] for r in rows if r["parked"]}


def _without_parked(events: Events, parked: dict[str, int | None]) -> Events:
    """The events still to apply: a parked stream's events before the one it was parked at
    are applied (they may come in the same batch as it), the rest are skipped."""
    if not parked:
        return events

    def applies(envelope: Envelope) -> bool:
        if envelope.stream_id not in parked:
            return True
        at = parked[envelope.stream_id]
        return at is not None and (envelope.stream_version or 0) < at

    kept = [(e, m) for e, m in events if applies(e)]
    if len(kept) < len(events):
        log.warning("skipping events of parked streams %s", sorted(parked))
    return kept


def _columns(rows: Sequence[tuple[object, ...]]) -> list[list[object]]:
    """Rows as one list per column: the arrays that `unnest` turns back into rows."""
    return [list(column) for column in zip(*rows, strict=True)]


# READ_ACCOUNTS and READ_TRANSFERS select the stream id, its parked flag and version, then the
# row's columns in the order of its dataclass's fields, the order WRITE_* inserts them in.
ROW_COLUMNS_FROM = 3
# A row's values in that order (not `astuple`, which deep-copies every value).
ACCOUNT_VALUES = attrgetter(*(f.name for f in fields(AccountRow)))
TRANSFER_VALUES = attrgetter(*(f.name for f in fields(TransferRow)))


# The stream ids of a batch, each with its row (NULLs if none yet) and whether it is parked.
READ_ACCOUNTS = (
    "SELECT ids.id AS stream_id, p.stream_id IS NOT NULL AS parked, p.version AS parked_version,"
    " a.account_id, a.owner, a.owned_by,"
    " a.balance, a.version, a.opened_at, a.updated_at"
    " FROM unnest($1::text[]) AS ids(id)"
    " LEFT JOIN accounts a ON a.account_id = ids.id"
    " LEFT JOIN parked_streams p ON p.stream_id = ids.id"
)
WRITE_ACCOUNTS = (
    "WITH upserted AS ("
    " INSERT INTO accounts (account_id, owner, owned_by, balance, version, opened_at,"
    " updated_at)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::integer[],"
    " $6::timestamptz[], $7::timestamptz[])"
    " ON CONFLICT (account_id) DO UPDATE SET balance = EXCLUDED.balance,"
    " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
    " WHERE accounts.version < EXCLUDED.version"
    "), activity AS ("
    " INSERT INTO account_activity (account_id, version, type, amount, balance_after,"
    " transfer_id, occurred_at, description)"
    " SELECT * FROM unnest($8::text[], $9::integer[], $10::text[], $11::numeric[],"
    " $12::numeric[], $13::text[], $14::timestamptz[], $15::text[])"
    " ON CONFLICT DO NOTHING"
    ") SELECT pg_notify($16, payload) FROM unnest($17::text[]) AS payload"
)


async def _project_accounts(conn: Connection, events: Events) -> int:
    if not events:
        return 0
    rows = await conn.fetch(READ_ACCOUNTS, _streams(events))
    events = _without_parked(events, _parked(rows))
    accounts = {
        r["account_id"]: AccountRow(*tuple(r)[ROW_COLUMNS_FROM:])
        for r in rows
        if r["account_id"] is not None
    }
    changed: set[str] = set()
    activity = []
    for envelope, event in events:
        stream_id = envelope.stream_id or ""
        current = accounts.get(stream_id)
        if not _next(envelope, current.version if current else 0):
            continue
        at = envelope.occurred_at
        match event:
            case AccountOpened():
                amount = event.initial_balance
                accounts[stream_id] = AccountRow(
                    stream_id, event.owner, event.owned_by, event.balance_after, 1, at, at
                )
            case MoneyDeposited() | MoneyWithdrawn():
                amount = event.amount
                assert current is not None  # version 1 is always AccountOpened
                accounts[stream_id] = replace(
                    current, balance=event.balance_after, version=current.version + 1, updated_at=at
                )
            case _:
                raise TypeError(f"{envelope.type} is not an account event")
        changed.add(stream_id)
        activity.append(
            (
                stream_id,
                envelope.stream_version,
                envelope.type,
                amount,
                event.balance_after,
                getattr(event, "transfer_id", None),
                at,
                getattr(event, "description", None),
            )
        )
    if not activity:
        return 0
    upserts = [ACCOUNT_VALUES(accounts[i]) for i in changed]
    await conn.execute(
        WRITE_ACCOUNTS,
        *_columns(upserts),
        *_columns(activity),
        READ_MODEL_CHANNEL,
        notify_payloads([]),
    )
    return len(activity)


READ_TRANSFERS = (
    "SELECT ids.id AS stream_id, p.stream_id IS NOT NULL AS parked, p.version AS parked_version,"
    " t.transfer_id,"
    " t.source_account_id, t.target_account_id, t.amount, t.status, t.reason, t.refunded,"
    " t.started_at, t.finished_at, t.version, t.debited_at, t.description"
    " FROM unnest($1::text[]) AS ids(id)"
    " LEFT JOIN transfers t ON t.transfer_id = ids.id"
    " LEFT JOIN parked_streams p ON p.stream_id = ids.id"
)
# A transfer's description comes with its first row (TransferStarted) and never changes, so
# an update leaves it alone.
WRITE_TRANSFERS = (
    "WITH upserted AS ("
    " INSERT INTO transfers (transfer_id, source_account_id, target_account_id, amount,"
    " status, reason, refunded, started_at, finished_at, version, debited_at, description)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[],"
    " $6::text[], $7::boolean[], $8::timestamptz[], $9::timestamptz[], $10::integer[],"
    " $11::timestamptz[], $12::text[])"
    " ON CONFLICT (transfer_id) DO UPDATE"
    " SET status = EXCLUDED.status, reason = EXCLUDED.reason,"
    " refunded = EXCLUDED.refunded, finished_at = EXCLUDED.finished_at,"
    " version = EXCLUDED.version, debited_at = EXCLUDED.debited_at"
    " WHERE transfers.version < EXCLUDED.version"
    ") SELECT pg_notify($13, payload) FROM unnest($14::text[]) AS payload"
)


def transfer_after(current: TransferRow | None, envelope: Envelope, event: Message) -> TransferRow:
    """A transfer's read row once `event` (its next version) is applied."""
    at = envelope.occurred_at
    if isinstance(event, TransferStarted):
        return TransferRow(
            envelope.stream_id or "",
            event.source_account_id,
            event.target_account_id,
            event.amount,
            "started",
            None,
            False,
            at,
            None,
            1,
            description=event.description,
        )
    assert current is not None  # version 1 is always TransferStarted
    bumped = replace(current, version=current.version + 1)
    match event:
        case TransferDebited():
            return replace(bumped, status="debited", debited_at=at)
        case TransferCreditRefused():
            # Still debited for the reader: the money is out of the source until the refund
            # lands, and the transfer is not over.
            return bumped
        case TransferCompleted():
            return replace(bumped, status="completed", finished_at=at)
        case TransferFailed():
            return replace(
                bumped,
                status="failed",
                reason=event.reason,
                refunded=event.refunded,
                finished_at=at,
            )
        case _:
            raise TypeError(f"{envelope.type} is not a transfer event")


async def _project_transfers(conn: Connection, events: Events) -> int:
    if not events:
        return 0
    rows = await conn.fetch(READ_TRANSFERS, _streams(events))
    events = _without_parked(events, _parked(rows))
    transfers = {
        r["transfer_id"]: TransferRow(*tuple(r)[ROW_COLUMNS_FROM:])
        for r in rows
        if r["transfer_id"] is not None
    }
    changed: set[str] = set()
    finished: set[str] = set()
    applied = 0
    for envelope, event in events:
        stream_id = envelope.stream_id or ""
        current = transfers.get(stream_id)
        if not _next(envelope, current.version if current else 0):
            continue
        transfers[stream_id] = transfer_after(current, envelope, event)
        if transfers[stream_id].finished_at is not None:
            finished.add(stream_id)
        changed.add(stream_id)
        applied += 1
    if not applied:
        return 0
    upserts = [TRANSFER_VALUES(transfers[i]) for i in changed]
    await conn.execute(
        WRITE_TRANSFERS, *_columns(upserts), READ_MODEL_CHANNEL, notify_payloads(sorted(finished))
    )
    return applied
