"""The transfers saga, put together: its event store of transfers, the steps it sends, fed by
the transfer commands topic and the answers to its steps; it re-sends steps left unanswered."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.eventstore.store import PostgresStorage
from bank_shared.eventstore.unit_of_work import EventStore, Storage
from bank_shared.service import EVENT_STORE, Platform
from bank_shared.topics import transfer_topics
from bank_transfers_saga.handlers import on_step_outcomes, on_transfer_commands
from bank_transfers_saga.settings import SagaSettings
from bank_transfers_saga.steps import Steps
from bank_transfers_saga.transfer import TRANSFER, TransferState


def create_app(settings: SagaSettings | None = None, *, storage: Storage | None = None) -> FastAPI:
    """The service; `storage` replaces its event store's tables (a unit test's, in memory)."""
    settings = settings or SagaSettings()
    topics = settings.topics
    platform = Platform(
        "transfers-saga",
        settings,
        database=settings.pg.transfers_db,
        migrations=[EVENT_STORE, "bank_transfers_saga.migrations"],
        topics=transfer_topics(topics),
        relay=settings.relay,
    )
    transfers: EventStore[TransferState] = EventStore(
        storage or PostgresStorage(platform, platform.relay),
        TRANSFER,
        topics,
        events_topic=topics.transfer_events,
        known=settings.known_streams,
        attempts=settings.max_conflict_retries,
        snapshot_every=settings.snapshot_every,
    )
    if transfers.snapshots is not None:
        platform.background(
            "snapshots", partial(transfers.snapshots.write_forever, transfers.storage)
        )
    steps = Steps(
        platform,
        topics,
        timeout=settings.step_timeout,
        max_backoff=settings.max_step_backoff,
        known=settings.known_streams,
        dead_letters=platform.dead_letters(),
    )
    platform.consume(
        topics.transfer_commands,
        partial(on_transfer_commands, transfers, steps),
        group_id=settings.commands_group,
        accepts=(StartTransfer,),
        dead_letters=platform.dead_letters(answers=transfers.storage),
        title="on_transfer_commands",
    )
    platform.consume(
        topics.step_outcomes,
        partial(on_step_outcomes, transfers, steps),
        group_id=settings.answers_group,
        accepts=(CommandOutcome,),
        dead_letters=platform.dead_letters(),
        title="on_step_outcomes",
    )
    platform.background(
        "overdue steps", partial(steps.resend_forever, settings.resend_check_interval)
    )
    return platform.app(
        title="Bank transfers saga",
        description="Runs transfers (withdraw, deposit, refund) over Kafka; this HTTP side only"
        " reports health.",
    )
