"""The projector, put together: the read model, fed by the account and transfer events."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from bank_projector.handlers import ParkingDeadLetters, on_events
from bank_projector.settings import ProjectorSettings
from bank_shared.contracts.accounts import ACCOUNT_EVENTS
from bank_shared.contracts.transfers import TRANSFER_EVENTS
from bank_shared.service import Platform
from bank_shared.topics import transfer_topics


def create_app(settings: ProjectorSettings | None = None) -> FastAPI:
    settings = settings or ProjectorSettings()
    topics = settings.topics
    # It writes no events: no outbox, no relay. It creates the topics it reads, so it can start
    # before the services that write them.
    platform = Platform(
        "projector",
        settings,
        database=settings.pg.read_db,
        migrations=["bank_projector.migrations"],
        topics=transfer_topics(topics),
    )
    parking = ParkingDeadLetters(platform.broker, topics.dead_letters, platform)
    for topic, group, accepts in (
        (topics.account_events, settings.accounts_group, ACCOUNT_EVENTS),
        (topics.transfer_events, settings.transfers_group, TRANSFER_EVENTS),
    ):
        platform.consume(
            topic,
            partial(on_events, platform),
            group_id=group,
            accepts=accepts,
            dead_letters=parking,
            title="on_events",
            max_records=settings.max_records,
        )
    return platform.app(
        title="Bank projector",
        description="Builds the read database from the account and transfer events; this HTTP"
        " side only reports health.",
    )
