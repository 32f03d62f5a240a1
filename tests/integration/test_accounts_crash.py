"""Offsets are committed only after the effects: the accounts process killed (SIGKILL) after
its transaction committed and before it committed the Kafka offset gets the command again
after a restart, recognises it, and applies nothing twice."""

from __future__ import annotations

import signal

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bank_accounts.settings import AccountsSettings
from bank_deploy.providers import Endpoints, free_port
from bank_shared.contracts.accounts import OpenAccount
from bank_shared.contracts.actors import TELLER
from bank_shared.topics import TopicSettings
from tests.support import (
    ServiceProcess,
    TopicTap,
    caused_by,
    envelope_for,
    eventually,
    fresh_topics,
    new_id,
    send,
    service_env,
)

pytestmark = pytest.mark.integration


async def committed_offset(infra: Endpoints, group: str, topic: str, partition: int) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, partition)) or 0
    finally:
        await consumer.stop()


async def effects(dsn: str, account: str) -> tuple[list[str], int]:
    conn = await asyncpg.connect(dsn)
    try:
        types = [
            r["event_type"]
            for r in await conn.fetch(
                "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY version", account
            )
        ]
        processed = await conn.fetchval(
            "SELECT count(*) FROM processed_messages WHERE key = $1", account
        )
        return types, processed
    finally:
        await conn.close()


def accounts_process(env: dict[str, str], *faults: str) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        "bank_accounts",
        env
        | {
            "BANK_ACCOUNTS_HTTP_PORT": str(port),
            "BANK_FAULT_POINTS": ",".join(faults),
        },
        port,
    )


async def test_killed_between_commit_and_offset_commit_redelivers_and_applies_once(
    isolated: Endpoints, producer: AIOKafkaProducer
) -> None:
    topics: TopicSettings = fresh_topics("ackcrash", partitions=1)
    group = f"{topics.account_commands}.accounts"
    env = service_env(isolated.kafka, isolated.pg, topics) | {
        "BANK_ACCOUNTS_CONSUMER_GROUP": group,
        "BANK_ACCOUNTS_RELAY_POLL_INTERVAL": "0.1",
        # The killed process's lease runs out this soon, and the restarted one publishes.
        "BANK_ACCOUNTS_RELAY_LEASE_DURATION": "1",
    }
    dsn = AccountsSettings(pg=isolated.pg).dsn
    account = new_id("grace")
    opening = envelope_for(
        OpenAccount(account_id=account, owner="Grace", initial_balance="7", owned_by=TELLER)
    )

    doomed = accounts_process(env, "consume.after-commit-before-ack")
    await (await doomed.start()).wait_ready()
    await send(producer, topics.account_commands, account, opening)
    assert await doomed.wait_exit() == -signal.SIGKILL
    assert await effects(dsn, account) == (["AccountOpened"], 1)
    assert await committed_offset(isolated, group, topics.account_commands, 0) == 0

    outcomes = await TopicTap(isolated.kafka, topics.command_outcomes).start()
    restarted = accounts_process(env)
    await restarted.start()
    try:
        await restarted.wait_ready()
        answers = await outcomes.wait_for(caused_by(opening.message_id))

        async def offset_committed() -> bool:
            return await committed_offset(isolated, group, topics.account_commands, 0) == 1

        await eventually(offset_committed, what="the redelivered batch's offset commit")
    finally:
        await restarted.stop()
        await outcomes.stop()

    assert await effects(dsn, account) == (["AccountOpened"], 1)
    assert len({a.value for a in outcomes.matching(caused_by(opening.message_id))}) == 1
    assert answers[0].envelope.causation_id == opening.message_id
