"""Test helpers for the read side: dump the read model, and compute what it should hold by
folding the event stores with the domain's own functions (not the projector's code)."""

from __future__ import annotations

from typing import Any

import asyncpg

from bank_shared.contracts.accounts import ACCOUNT_EVENTS, AccountOpened
from bank_shared.contracts.envelope import Envelope, read_payload
from bank_shared.contracts.transfers import TRANSFER_EVENTS, TransferDebited, TransferFailed
from bank_shared.settings import PostgresSettings
from bank_transfers_saga.transfer import INITIAL as NEW_TRANSFER
from bank_transfers_saga.transfer import evolve as evolve_transfer

Rows = dict[str, list[tuple[Any, ...]]]

# Statuses the query contract knows: a transfer refunding its source is still "debited".
PUBLIC_STATUS = {"refunding": "debited"}


async def dump_read_model(pg: PostgresSettings) -> Rows:
    conn = await asyncpg.connect(pg.dsn(pg.read_db))
    try:
        return {
            "accounts": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT account_id, owner, balance::text, version, opened_at, updated_at,"
                    " owned_by FROM accounts ORDER BY account_id"
                )
            ],
            "account_activity": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT account_id, version, type, amount::text, balance_after::text,"
                    " transfer_id, occurred_at, description"
                    " FROM account_activity ORDER BY account_id, version"
                )
            ],
            "transfers": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT transfer_id, source_account_id, target_account_id, amount::text,"
                    " status, reason, refunded, started_at, finished_at, version, debited_at,"
                    " description FROM transfers"
                    " ORDER BY transfer_id"
                )
            ],
        }
    finally:
        await conn.close()


async def history(pg: PostgresSettings, database: str) -> dict[str, list[Envelope]]:
    conn = await asyncpg.connect(pg.dsn(database))
    try:
        streams: dict[str, list[Envelope]] = {}
        if await conn.fetchval("SELECT to_regclass('events')") is None:
            return streams  # that service never ran in this session: no history yet
        for row in await conn.fetch(
            "SELECT stream_id, envelope FROM events ORDER BY stream_id, version"
        ):
            streams.setdefault(row["stream_id"], []).append(
                Envelope.model_validate_json(row["envelope"])
            )
        return streams
    finally:
        await conn.close()


async def expected_read_model(pg: PostgresSettings) -> Rows:
    """What the read model must be: every stream of both stores, folded."""
    accounts, activity, transfers = [], [], []
    for account_id, events in (await history(pg, pg.accounts_db)).items():
        folded = [read_payload(e) for e in events]
        for envelope, event in zip(events, folded, strict=True):
            assert isinstance(event, ACCOUNT_EVENTS)
            amount = event.initial_balance if isinstance(event, AccountOpened) else event.amount
            activity.append(
                (
                    account_id,
                    envelope.stream_version,
                    envelope.type,
                    str(amount),
                    str(event.balance_after),
                    getattr(event, "transfer_id", None),
                    envelope.occurred_at,
                    getattr(event, "description", None),
                )
            )
        opened, last = folded[0], folded[-1]
        assert isinstance(opened, AccountOpened)
        assert isinstance(last, ACCOUNT_EVENTS)
        accounts.append(
            (
                account_id,
                opened.owner,
                str(last.balance_after),
                len(events),
                events[0].occurred_at,
                events[-1].occurred_at,
                opened.owned_by,
            )
        )
    for transfer_id, events in (await history(pg, pg.transfers_db)).items():
        state = NEW_TRANSFER
        failed: TransferFailed | None = None
        finished = debited = None
        for envelope in events:
            event = read_payload(envelope)
            assert isinstance(event, TRANSFER_EVENTS)
            state = evolve_transfer(state, event)
            if isinstance(event, TransferFailed):
                failed = event
            if isinstance(event, TransferDebited):
                debited = envelope.occurred_at
            if state.finished:
                finished = envelope.occurred_at
        transfers.append(
            (
                transfer_id,
                state.source_account_id,
                state.target_account_id,
                str(state.amount),
                PUBLIC_STATUS.get(state.status, state.status),
                failed.reason if failed else None,
                failed.refunded if failed else False,
                events[0].occurred_at,
                finished,
                len(events),
                debited,
                state.description,
            )
        )
    return {
        "accounts": sorted(accounts),
        "account_activity": sorted(activity, key=lambda r: (r[0], r[1])),
        "transfers": sorted(transfers),
    }
