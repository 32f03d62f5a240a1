"""The accounts service, put together: its event store of bank accounts, fed by the account
commands topic; it answers each command and publishes the accounts' events."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from bank_accounts.account import BANK_ACCOUNT, AccountState
from bank_accounts.handlers import on_account_commands
from bank_accounts.settings import AccountsSettings
from bank_shared.contracts.accounts import ACCOUNT_COMMANDS
from bank_shared.eventstore.store import PostgresStorage
from bank_shared.eventstore.unit_of_work import EventStore, Storage
from bank_shared.service import EVENT_STORE, Platform
from bank_shared.topics import account_topics


def create_app(
    settings: AccountsSettings | None = None, *, storage: Storage | None = None
) -> FastAPI:
    """The service; `storage` replaces its event store's tables (a unit test's, in memory)."""
    settings = settings or AccountsSettings()
    topics = settings.topics
    platform = Platform(
        "accounts",
        settings,
        database=settings.pg.accounts_db,
        migrations=[EVENT_STORE],
        topics=account_topics(topics),
        relay=settings.relay,
    )
    accounts: EventStore[AccountState] = EventStore(
        storage or PostgresStorage(platform, platform.relay),
        BANK_ACCOUNT,
        topics,
        events_topic=topics.account_events,
        known=settings.known_streams,
        attempts=settings.max_conflict_retries,
        snapshot_every=settings.snapshot_every,
    )
    if accounts.snapshots is not None:
        platform.background(
            "snapshots", partial(accounts.snapshots.write_forever, accounts.storage)
        )
    platform.consume(
        topics.account_commands,
        partial(on_account_commands, accounts),
        group_id=settings.consumer_group,
        accepts=ACCOUNT_COMMANDS,
        dead_letters=platform.dead_letters(answers=accounts.storage),
        title="on_account_commands",
    )
    return platform.app(
        title="Bank accounts service",
        description="Decides account commands from Kafka; this HTTP side only reports health.",
    )
