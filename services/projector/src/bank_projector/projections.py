"""Applying account and transfer events to the read tables, exactly once and in order.

Each read row carries the version of the stream it reflects: that is the projection's
checkpoint, updated in the same transaction as the row. An event at or below it was applied
already (a redelivery) and changes nothing; the next one is applied; one further ahead means
an event is missing, and the batch is retried later rather than skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

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
    """Apply a batch of events (any order across streams, version order within one) in the
    caller's transaction; return how many were new. Events of parked streams are skipped."""
    parked = {
        r["stream_id"]
        for r in await conn.fetch(
            "SELECT stream_id FROM parked_streams WHERE stream_id = ANY($1::text[])",
            list({e.stream_id for e, _ in events}),
        )
    }
    if parked:
        log.warning("skipping events of parked streams %s", sorted(parked))
        events = [(e, m) for e, m in events if e.stream_id not in parked]
    accounts = [(e, m) for e, m in events if isinstance(m, ACCOUNT_EVENTS)]
    transfers = [(e, m) for e, m in events if isinstance(m, TRANSFER_EVENTS)]
    applied = await _project_accounts(conn, accounts) + await _project_transfers(conn, transfers)
    if applied:
        finished = sorted(
            {
                e.stream_id or ""
                for e, m in transfers
                if isinstance(m, TransferCompleted | TransferFailed)
            }
        )
        await conn.execute(
            "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
            READ_MODEL_CHANNEL,
            notify_payloads(finished),
        )
    return applied


async def _project_accounts(conn: Connection, events: Events) -> int:
    if not events:
        return 0
    # FOR UPDATE: two projector instances briefly sharing a partition (a rebalance) take
    # turns on a stream; the second then sees the first one's version and skips.
    rows = await conn.fetch(
        "SELECT account_id, owner, balance, version, opened_at, updated_at FROM accounts"
        " WHERE account_id = ANY($1::text[]) FOR UPDATE",
        list({e.stream_id for e, _ in events}),
    )
    accounts = {r["account_id"]: AccountRow(**dict(r)) for r in rows}
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
                    stream_id, event.owner, event.balance_after, 1, at, at
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
            )
        )
    if not activity:
        return 0
    await conn.executemany(
        "INSERT INTO accounts (account_id, owner, balance, version, opened_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id) DO UPDATE SET"
        " balance = EXCLUDED.balance, version = EXCLUDED.version,"
        " updated_at = EXCLUDED.updated_at WHERE accounts.version < EXCLUDED.version",
        [
            (a.account_id, a.owner, a.balance, a.version, a.opened_at, a.updated_at)
            for a in (accounts[i] for i in changed)
        ],
    )
    # Activity rows are immutable facts keyed by (account, version): a row written by a
    # concurrent instance is the same row.
    await conn.executemany(
        "INSERT INTO account_activity (account_id, version, type, amount, balance_after,"
        " transfer_id, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT DO NOTHING",
        activity,
    )
    return len(activity)


async def _project_transfers(conn: Connection, events: Events) -> int:
    if not events:
        return 0
    rows = await conn.fetch(
        "SELECT transfer_id, source_account_id, target_account_id, amount, status, reason,"
        " refunded, started_at, finished_at, version, debited_at FROM transfers"
        " WHERE transfer_id = ANY($1::text[]) FOR UPDATE",
        list({e.stream_id for e, _ in events}),
    )
    transfers = {r["transfer_id"]: TransferRow(**dict(r)) for r in rows}
    changed: set[str] = set()
    applied = 0
    for envelope, event in events:
        stream_id = envelope.stream_id or ""
        current = transfers.get(stream_id)
        if not _next(envelope, current.version if current else 0):
            continue
        at = envelope.occurred_at
        if isinstance(event, TransferStarted):
            transfers[stream_id] = TransferRow(
                stream_id,
                event.source_account_id,
                event.target_account_id,
                event.amount,
                "started",
                None,
                False,
                at,
                None,
                1,
            )
        else:
            assert current is not None  # version 1 is always TransferStarted
            bumped = replace(current, version=current.version + 1)
            match event:
                case TransferDebited():
                    transfers[stream_id] = replace(bumped, status="debited", debited_at=at)
                case TransferCreditRefused():
                    # Still debited for the reader: the money is out of the source until the
                    # refund lands, and the transfer is not over.
                    transfers[stream_id] = bumped
                case TransferCompleted():
                    transfers[stream_id] = replace(bumped, status="completed", finished_at=at)
                case TransferFailed():
                    transfers[stream_id] = replace(
                        bumped,
                        status="failed",
                        reason=event.reason,
                        refunded=event.refunded,
                        finished_at=at,
                    )
                case _:
                    raise TypeError(f"{envelope.type} is not a transfer event")
        changed.add(stream_id)
        applied += 1
    if not applied:
        return 0
    await conn.executemany(
        "INSERT INTO transfers (transfer_id, source_account_id, target_account_id, amount,"
        " status, reason, refunded, started_at, finished_at, version, debited_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (transfer_id) DO UPDATE"
        " SET status = EXCLUDED.status, reason = EXCLUDED.reason,"
        " refunded = EXCLUDED.refunded, finished_at = EXCLUDED.finished_at,"
        " version = EXCLUDED.version, debited_at = EXCLUDED.debited_at"
        " WHERE transfers.version < EXCLUDED.version",
        [
            (
                t.transfer_id,
                t.source_account_id,
                t.target_account_id,
                t.amount,
                t.status,
                t.reason,
                t.refunded,
                t.started_at,
                t.finished_at,
                t.version,
                t.debited_at,
            )
            for t in (transfers[i] for i in changed)
        ],
    )
    return applied
