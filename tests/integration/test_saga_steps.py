"""The saga's record of the account commands it issued (`saga_steps`), on a real PostgreSQL:
an answered step keeps its first answer's time and is never sent again, and marking steps
answered finds them by primary key, whatever the table's statistics say.

The saga is driven directly on the test's own database; no relay runs, so its outbox rows do
not reach Kafka (a dead-lettered step does: it is sent at once)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from faststream.kafka import KafkaBroker

from bank_deploy.providers import Endpoints
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.messaging.dead_letters import DeadLetters
from bank_shared.messaging.kafka import ensure_topics
from bank_shared.topics import TopicSettings, transfer_topics
from bank_transfers_saga.handlers import on_step_outcomes, on_transfer_commands
from bank_transfers_saga.saga import step_command_id
from bank_transfers_saga.steps import MARK_ANSWERED, Steps
from bank_transfers_saga.transfer import TransferState
from tests.support import (
    Database,
    TopicTap,
    envelope_for,
    eventually,
    fresh_topics,
    new_id,
    transfer_store,
    withdrawn,
)

pytestmark = pytest.mark.integration

Pool = asyncpg.Pool  # asyncpg.Pool[Any] only in annotations (not subscriptable at run time)

STARTED_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = STARTED_AT

    def __call__(self) -> datetime:
        return self.now


class Saga:
    """The saga's store and steps on the test's own database, on a clock of its own."""

    def __init__(self, pool: Pool, topics: TopicSettings, **options: Any) -> None:
        self.clock = Clock()
        self.transfers: EventStore[TransferState] = transfer_store(pool, topics, clock=self.clock)
        self.steps = Steps(Database(pool), topics, **options)

    async def start(self, transfer_id: str, source: str) -> None:
        start = StartTransfer(
            transfer_id=transfer_id, source_account_id=source, target_account_id="dst", amount="10"
        )
        [started] = await on_transfer_commands(
            self.transfers, self.steps, [(envelope_for(start), start)]
        )
        assert started.status == "accepted"

    async def answer(self, transfer_id: str, source: str) -> None:
        await on_step_outcomes(self.transfers, self.steps, [withdrawn(transfer_id, source)])


async def test_an_answered_step_keeps_its_first_answer_time_and_is_not_sent_again(
    transfers_db: Pool,
) -> None:
    saga = Saga(transfers_db, fresh_topics("steps"), timeout=10.0)
    transfer_id, source = new_id("t"), new_id("src")
    await saga.start(transfer_id, source)

    saga.clock.now = STARTED_AT + timedelta(seconds=1)
    await saga.answer(transfer_id, source)
    saga.clock.now = STARTED_AT + timedelta(seconds=2)
    await saga.answer(transfer_id, source)  # another copy: moves nothing
    async with transfers_db.acquire() as conn:
        # Every step overdue: only the unanswered deposit may be sent again.
        await conn.execute("UPDATE saga_steps SET next_attempt_at = now() - interval '1 hour'")
        answered = await conn.fetchval(
            "SELECT answered_at FROM saga_steps WHERE command_id = $1",
            step_command_id(transfer_id, "withdraw"),
        )

    assert answered == STARTED_AT + timedelta(seconds=1)
    assert await saga.steps.resend_due() == 1
    async with transfers_db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT step, attempts FROM saga_steps WHERE transfer_id = $1", transfer_id
        )
    attempts = {row["step"]: row["attempts"] for row in rows}
    assert attempts == {"withdraw": 1, "deposit": 2}


async def test_marking_steps_answered_finds_them_by_primary_key_whatever_the_statistics(
    transfers_db: Pool,
) -> None:
    """The steps here are inserted answered, so after the vacuum the partial index of
    unanswered steps (saga_steps_due) is empty and the statistics say no step waits: the
    state in which the planner chose that index for the old mark (`answered_at IS NULL` in
    its condition). In a running bank that index then keeps an entry for every step answered
    until the next vacuum, and a mark that used it would read more of them at every batch:
    the mark must not be able to use it."""
    async with transfers_db.acquire() as conn:
        await conn.execute(
            "INSERT INTO saga_steps (command_id, transfer_id, step, topic, key, command,"
            " next_attempt_at, answered_at)"
            " SELECT gen_random_uuid(), 't' || g, 'withdraw', 'account-commands', 'k', '',"
            " now(), now() FROM generate_series(1, 20000) g"
        )
        await conn.execute("VACUUM ANALYZE saga_steps")
        new = [uuid.uuid4() for _ in range(10)]
        await conn.execute(
            "INSERT INTO saga_steps (command_id, transfer_id, step, topic, key, command,"
            " next_attempt_at) SELECT id, 'new', 'deposit', 'account-commands', 'k', '', now()"
            " FROM unnest($1::uuid[]) AS id",
            new,
        )
        plan: str = await conn.fetchval(  # the plan only: nothing runs
            f"EXPLAIN (FORMAT JSON) {MARK_ANSWERED}", new, [datetime.now(UTC)] * len(new)
        )

    indexes = {
        node["Index Name"] for node in _nodes(json.loads(plan)[0]["Plan"]) if "Index Name" in node
    }
    assert indexes == {"saga_steps_pkey"}, f"the mark's plan uses {indexes}: {plan}"


def _nodes(node: dict[str, object]) -> list[dict[str, object]]:
    children = node.get("Plans", [])
    assert isinstance(children, list)
    return [node, *(n for child in children for n in _nodes(child))]


@pytest.fixture
async def broker(infra: Endpoints) -> AsyncIterator[KafkaBroker]:
    broker = KafkaBroker(infra.kafka.bootstrap)
    await broker.connect()
    yield broker
    await broker.stop()


async def test_a_step_that_cannot_be_read_is_dead_lettered_once_and_the_others_are_sent(
    transfers_db: Pool, infra: Endpoints, broker: KafkaBroker
) -> None:
    topics = fresh_topics("steps-dead")
    await ensure_topics(infra.kafka, transfer_topics(topics))
    saga = Saga(transfers_db, topics, dead_letters=DeadLetters(broker, topics.dead_letters))
    transfer_id, source = new_id("t"), new_id("src")
    await saga.start(transfer_id, source)
    broken = uuid.uuid4()
    unreadable = b"{not a command"
    async with transfers_db.acquire() as conn:
        await conn.execute(
            "INSERT INTO saga_steps (command_id, transfer_id, step, topic, key, command,"
            " next_attempt_at) VALUES ($1, 'broken', 'deposit', $2, 'acc', $3, now())",
            broken,
            topics.account_commands,
            unreadable,
        )
        await conn.execute("UPDATE saga_steps SET next_attempt_at = now() - interval '1 hour'")
    letters = await TopicTap(infra.kafka, topics.dead_letters).start()
    try:
        assert await saga.steps.resend_due() == 1  # the withdraw, not the broken step
        [letter] = await letters.wait_for(lambda r: r.value == unreadable)
        async with transfers_db.acquire() as conn:
            await conn.execute("UPDATE saga_steps SET next_attempt_at = now() - interval '1 hour'")
        assert await saga.steps.resend_due() == 1  # the withdraw again; the broken one is done
        async with transfers_db.acquire() as conn:
            marked = await conn.fetchval(
                "SELECT dead_lettered_at IS NOT NULL FROM saga_steps WHERE command_id = $1",
                broken,
            )
            resent = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE message_id = $1",
                step_command_id(transfer_id, "withdraw"),
            )
        assert letters.matching(lambda r: r.value == unreadable) == [letter]
    finally:
        await letters.stop()
    assert marked is True
    assert resent == 3  # first sent, then twice again
    assert letter.headers["step"] == b"deposit"
    assert b"cannot send step deposit again" in letter.headers["dead-letter-reason"]


class FailsFirst(Steps):
    """Its first check for overdue steps fails with an error of no known kind."""

    calls = 0

    async def resend_due(self, limit: int = 200) -> int:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("simulated: a bug in the first check")
        return await super().resend_due(limit)


async def test_the_resend_loop_goes_on_after_an_unexpected_error(transfers_db: Pool) -> None:
    steps = FailsFirst(Database(transfers_db), fresh_topics("steps-loop"))
    loop = asyncio.create_task(steps.resend_forever(0.01))
    try:
        await eventually(lambda: steps.calls >= 3 or loop.done(), what="two more checks")
        assert not loop.done(), "the loop ended"
    finally:
        loop.cancel()
