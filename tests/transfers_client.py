"""Driving transfers in tests: open accounts, start transfers, read the event stores."""

from __future__ import annotations

from decimal import Decimal

from aiokafka import AIOKafkaProducer

from bank_accounts.account import BANK_ACCOUNT
from bank_accounts.settings import AccountsSettings
from bank_shared.contracts.accounts import OpenAccount
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Envelope
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from tests.support import account_store, decide, envelope_for, eventually, history, new_id, send


async def open_accounts(
    accounts: Platform, topics: TopicSettings, **balances: str
) -> dict[str, str]:
    """Open one account per keyword (name=balance); return name -> account id."""
    store = account_store(accounts.pool, topics)
    ids = {name: new_id(name) for name in balances}
    for name, balance in balances.items():
        command = OpenAccount(
            account_id=ids[name], owner=name.title(), initial_balance=balance, owned_by=TELLER
        )
        [outcome] = await decide(store, command)
        assert outcome.accepted
    return ids


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
    return BANK_ACCOUNT.fold(await history(settings.dsn, account_id)).balance


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
