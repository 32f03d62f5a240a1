"""Wiring: settings -> pool -> topics -> producer -> relay -> broker -> HTTP app (health only)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from faststream.kafka import KafkaRouter

from bank_accounts.account import AccountCommandHandler
from bank_accounts.handlers import build_router
from bank_accounts.settings import AccountsSettings
from bank_shared.eventstore.relay import RelaySettings
from bank_shared.messaging.consume import DeadLetters
from bank_shared.runtime import Runtime, kafka_service_app, run_runtime
from bank_shared.topics import account_topics


@contextlib.asynccontextmanager
async def run_accounts(settings: AccountsSettings) -> AsyncIterator[Runtime]:
    def routers(runtime: Runtime) -> list[KafkaRouter]:
        handler = AccountCommandHandler(
            runtime.pool,
            settings.topics,
            max_conflict_retries=settings.max_conflict_retries,
            known_accounts=settings.known_accounts,
            relay=runtime.relay,
        )
        dead_letters = DeadLetters(
            runtime.producer, settings.topics.dead_letters, answer_commands=settings.topics
        )
        return [
            build_router(settings.topics, handler, dead_letters, group_id=settings.consumer_group)
        ]

    async with run_runtime(
        name="accounts",
        dsn=settings.dsn,
        kafka=settings.kafka,
        topics=account_topics(settings.topics),
        migrations=["bank_shared.eventstore.migrations"],
        pool_size=settings.pool_size,
        routers=routers,
        relay=RelaySettings(
            lease_key=settings.relay_lease_key,
            lease_duration=settings.relay_lease_duration,
            poll_interval=settings.relay_poll_interval,
            linger=settings.relay_linger,
            linger_min_rate=settings.relay_linger_min_rate,
        ),
    ) as runtime:
        yield runtime


def create_app(settings: AccountsSettings | None = None) -> FastAPI:
    chosen = settings or AccountsSettings()
    return kafka_service_app(
        "Bank accounts service",
        "Consumes account commands from Kafka; this HTTP side only reports health.",
        lambda: run_accounts(chosen),
    )
