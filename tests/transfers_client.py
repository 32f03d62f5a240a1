"""Driving transfers in tests: open accounts, start transfers, read the event stores."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
from aiokafka import AIOKafkaProducer

from bank_accounts.account import AccountCommandHandler, account_event
from bank_accounts.settings import AccountsSettings
from bank_shared.contracts.accounts import OpenAccount
from bank_shared.contracts.envelope import Envelope
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.domain.account import fold as fold_account
from bank_shared.eventstore.store import load_stream
from bank_shared.runtime import Runtime
from bank_shared.topics import TopicSettings
from tests.support import envelope_for, eventually, new_id, send


async def open_accounts(
    accounts: Runtime, topics: TopicSettings, **balances: str
) -> dict[str, str]:
    """Open one account per keyword (name=balance); return name -> account id."""
    handler = AccountCommandHandler(accounts.pool, topics)
    ids = {name: new_id(name) for name in balances}
    for name, balance in balances.items():
        command = OpenAccount(account_id=ids[name], owner=name.title(), initial_balance=balance)
        outcome = await handler.handle(envelope_for(command), command)
        assert outcome.accepted
    return ids


async def history(dsn: str, stream_id: str) -> list[Envelope]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r.envelope for r in await load_stream(conn, stream_id)]
    finally:
        await conn.close()


async def finished_transfer(dsn: str, transfer_id: str, within: float = 30) -> list[str]:
    """Wait until the transfer's stream ends completed or failed; return its event types."""
    types: list[str] = []

    async def finished() -> bool:
        nonlocal types
        types = [e.type for e in await history(dsn, transfer_id)]
        return bool(types) and types[-1] in ("TransferCompleted", "TransferFailed")

    await eventually(finished, within=within, what=f"transfer {transfer_id} to finish")
    return types


async def balance(settings: AccountsSettings, account_id: str) -> Decimal:
    events = await history(settings.dsn, account_id)
    return fold_account(account_event(e) for e in events).balance


async def start_transfer(
    producer: AIOKafkaProducer, topics: TopicSettings, source: str, target: str, amount: str
) -> tuple[str, Envelope]:
    transfer_id = new_id("transfer")
    command = envelope_for(
        StartTransfer(
            transfer_id=transfer_id,
            source_account_id=source,
            target_account_id=target,
            amount=amount,
        )
    )
    await send(producer, topics.transfer_commands, transfer_id, command)
    return transfer_id, command
