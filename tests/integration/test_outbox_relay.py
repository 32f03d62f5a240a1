"""The outbox relay: nothing lost and nothing reordered when it dies at the worst moments."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bank_deploy.providers import Endpoints
from bank_shared.contracts.accounts import DepositMoney, MoneyDeposited
from bank_shared.contracts.envelope import seal_events
from bank_shared.db import Connection
from bank_shared.eventstore.relay import FaultHook, OutboxRelay
from bank_shared.eventstore.store import (
    Changes,
    CommitListener,
    OutboxMessage,
    OutboxRow,
    write,
)
from bank_shared.settings import RelaySettings
from bank_shared.topics import TopicSettings
from tests.outbox_history import (
    IN_ORDER,
    TOTAL,
    commit_history,
    unpublished,
    versions_by_stream,
)
from tests.support import TopicTap, envelope_for, eventually, keyed, records_in_topic

pytestmark = pytest.mark.integration


class RelayKilledError(BaseException):
    """Raised inside the relay at a fault point: like SIGKILL, nothing after it runs."""


@pytest.fixture
def relay(infra: Endpoints, store_dsn: str) -> Callable[..., OutboxRelay]:
    """Relays of one service: they share the database and the client name."""
    name = f"test-relay-{store_dsn.rsplit('/', 1)[-1]}"

    def make(settings: RelaySettings, fault: FaultHook | None = None) -> OutboxRelay:
        return OutboxRelay(store_dsn, infra.kafka, settings, name=name, fault=fault)

    return make


async def run_until_killed(relay: OutboxRelay) -> None:
    task = asyncio.create_task(relay.run())
    [outcome] = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(outcome, RelayKilledError)


def kill_at(point: str) -> FaultHook:
    async def fault(reached: str) -> None:
        if reached == point:
            raise RelayKilledError(point)

    return fault


async def restart_and_collect(
    infra: Endpoints,
    relay: Callable[..., OutboxRelay],
    topics: TopicSettings,
    accounts: list[str],
    dsn: str,
    expected: int,
) -> TopicTap:
    """Run a fresh relay until `expected` events are visible and every row is marked."""
    tap = await TopicTap(infra.kafka, topics.account_events).start()
    restarted = asyncio.create_task(relay(SETTINGS).run())
    try:
        await tap.wait_for(lambda r: r.key in accounts, count=expected)
        await eventually(lambda: _is_zero(unpublished(dsn)), what="rows marked published")
    finally:
        restarted.cancel()
        await asyncio.gather(restarted, return_exceptions=True)
        await tap.stop()
    return tap


# A short lease: a relay killed in a test is replaced within a second.
SETTINGS = RelaySettings(lease_key=1, poll_interval=0.1, lease_duration=1.0)


async def test_killed_after_commit_before_publish_the_restarted_relay_publishes_in_order(
    infra: Endpoints,
    store_dsn: str,
    relay_topics: TopicSettings,
    relay: Callable[..., OutboxRelay],
) -> None:
    accounts = await commit_history(store_dsn, relay_topics)

    await run_until_killed(relay(SETTINGS, kill_at("fetched")))
    assert await records_in_topic(infra.kafka, relay_topics.account_events) == 0
    assert await unpublished(store_dsn) == 2 * TOTAL  # events + one outcome per command

    tap = await restart_and_collect(infra, relay, relay_topics, accounts, store_dsn, TOTAL)
    assert versions_by_stream(tap, accounts) == dict.fromkeys(accounts, IN_ORDER)


async def test_a_paused_old_leader_that_wakes_after_a_takeover_sends_nothing_it_had_read(
    infra: Endpoints,
    store_dsn: str,
    relay_topics: TopicSettings,
    relay: Callable[..., OutboxRelay],
) -> None:
    accounts = await commit_history(store_dsn, relay_topics)
    # The old leader has read the rows and stalls (a GC pause, SIGSTOP) before sending them.
    stalled, release = asyncio.Event(), asyncio.Event()

    async def stall_after_fetch(reached: str) -> None:
        if reached == "fetched":
            stalled.set()
            await release.wait()

    old = relay(SETTINGS, stall_after_fetch)
    old_task = asyncio.create_task(old.run())
    try:
        await asyncio.wait_for(stalled.wait(), 30)
        stalled_in = old.lease.term
        # Its lease (the same one) runs out while it stalls: a new leader takes it over,
        # publishes and marks everything, and hands the lease back when it stops.
        await restart_and_collect(infra, relay, relay_topics, accounts, store_dsn, TOTAL)
        release.set()  # the old leader wakes, with the rows it had read
        await eventually(
            lambda: old.is_leader and old.lease.term not in (None, stalled_in),
            what="the old leader to step down, then lead again",
        )
    finally:
        old_task.cancel()
        await asyncio.gather(old_task, return_exceptions=True)
    tap = await TopicTap(infra.kafka, relay_topics.account_events).start()
    try:
        await tap.wait_for(lambda r: r.key in accounts, count=TOTAL)
    finally:
        await tap.stop()
    # Each stream once, in version order: the old leader sent none of what it had read.
    assert await records_in_topic(infra.kafka, relay_topics.account_events) == TOTAL
    assert versions_by_stream(tap, accounts) == dict.fromkeys(accounts, IN_ORDER)


async def test_killed_after_publish_before_marking_it_publishes_again_never_reordered(
    infra: Endpoints,
    store_dsn: str,
    relay_topics: TopicSettings,
    relay: Callable[..., OutboxRelay],
) -> None:
    accounts = await commit_history(store_dsn, relay_topics)

    await run_until_killed(relay(SETTINGS, kill_at("sent")))
    assert await records_in_topic(infra.kafka, relay_topics.account_events) == TOTAL
    assert await unpublished(store_dsn) == 2 * TOTAL

    tap = await restart_and_collect(infra, relay, relay_topics, accounts, store_dsn, 2 * TOTAL)
    # At least once: every event twice, each copy of the stream in version order.
    assert versions_by_stream(tap, accounts) == dict.fromkeys(accounts, IN_ORDER + IN_ORDER)


async def test_only_one_relay_publishes_per_database_and_a_standby_takes_over(
    relay: Callable[..., OutboxRelay],
) -> None:
    # A lease far longer than the test: the standby takes over because the leader hands the
    # lease over when it stops, not because it expired.
    settings = RelaySettings(lease_key=42, poll_interval=0.1, lease_duration=300.0)
    first, second = relay(settings), relay(settings)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        await eventually(lambda: first.is_leader or second.is_leader, what="a leader")
        await asyncio.sleep(0.5)  # several poll intervals: the standby must stay standby
        assert [first.is_leader, second.is_leader].count(True) == 1
        leader = 0 if first.is_leader else 1
        tasks[leader].cancel()
        standby = second if leader == 0 else first
        await eventually(lambda: standby.is_leader, what="the standby to take over")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_purge_deletes_published_rows_past_retention_and_keeps_unpublished_ones(
    store_dsn: str, relay_topics: TopicSettings, relay: Callable[..., OutboxRelay]
) -> None:
    await commit_history(store_dsn, relay_topics)
    purger = relay(RelaySettings(lease_key=7, retention=timedelta(0)))
    conn = await asyncpg.connect(store_dsn)
    try:
        await conn.execute(
            "UPDATE outbox SET published_at = now() - interval '1 second'"
            " WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 5)"
        )
        before = await conn.fetchval("SELECT count(*) FROM outbox")
        assert await purger.purge(conn) == 5
        assert await conn.fetchval("SELECT count(*) FROM outbox") == before - 5
        assert (
            await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") == 0
        )
    finally:
        await conn.close()


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


class RoundsRecorded(OutboxRelay):
    """A relay that counts its rounds and notes the ids each round sent."""

    calls = 0
    rounds: list[list[int]]

    async def publish_pending(
        self, conn: Connection, producer: AIOKafkaProducer, sent_before: Sequence[int] = ()
    ) -> list[int]:
        self.calls += 1
        sent = await super().publish_pending(conn, producer, sent_before)
        if sent:
            self.rounds.append(sent)
        return sent


# Seconds: far longer than the 0.2 s between two commits that must share a round.
LONG_LINGER = 3.0

# Starts a relay with the given linger and rate from which it lingers; returns it and a function
# that commits one outbox row and returns its id.
StartRelay = Callable[
    [float, float], Awaitable[tuple[RoundsRecorded, Callable[[], Awaitable[int]]]]
]


@pytest.fixture
async def relay_with_linger(
    infra: Endpoints, store_dsn: str, relay_topics: TopicSettings
) -> AsyncIterator[StartRelay]:
    conn = await asyncpg.connect(store_dsn)
    tasks: list[asyncio.Task[None]] = []

    async def commit_row() -> int:
        deposit = DepositMoney(account_id="acct-linger", amount="1.00")
        message = OutboxMessage(relay_topics.account_commands, "acct-linger", envelope_for(deposit))
        await write(conn, Changes(outbox=[message]))
        row_id: int = await conn.fetchval("SELECT max(id) FROM outbox")
        return row_id

    async def start(
        linger: float, min_rate: float
    ) -> tuple[RoundsRecorded, Callable[[], Awaitable[int]]]:
        settings = RelaySettings(lease_key=11, linger=linger, linger_min_rate=min_rate)
        # A clock that stands still: every row of the test is sent in the same second.
        relay = RoundsRecorded(
            store_dsn, infra.kafka, settings, name="test-linger", clock=lambda: 0.0
        )
        relay.rounds = []
        tasks.append(asyncio.create_task(relay.run()))
        # Its first round comes after it LISTENs: from then on it hears of every commit.
        await eventually(lambda: relay.calls > 0, what="the relay's first round")
        return relay, commit_row

    try:
        yield start
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await conn.close()


async def test_rows_committed_while_the_relay_lingers_share_its_round(
    relay_with_linger: StartRelay,
) -> None:
    # A linger far longer than the gap between the two commits: a busy machine that stalls
    # the test for a second still commits the second row before the round.
    relay, commit_row = await relay_with_linger(LONG_LINGER, 0.0)
    first = await commit_row()
    await asyncio.sleep(0.2)  # well within the linger the first row woke
    second = await commit_row()
    await eventually(lambda: relay.rounds, what="a round")
    assert relay.rounds == [[first, second]]


async def test_without_a_linger_each_row_goes_in_its_own_round(
    relay_with_linger: StartRelay,
) -> None:
    relay, commit_row = await relay_with_linger(0.0, 0.0)
    first = await commit_row()
    await asyncio.sleep(1.0)  # far longer than a round takes: the first row is gone by now
    second = await commit_row()
    await eventually(lambda: len(relay.rounds) >= 2, what="two rounds")
    assert relay.rounds == [[first], [second]]


async def test_below_its_rate_of_rows_the_relay_does_not_linger(
    relay_with_linger: StartRelay,
) -> None:
    relay, commit_row = await relay_with_linger(LONG_LINGER, 2.0)
    first = await commit_row()  # no row sent yet in this (frozen) second: no linger
    # Long enough for the round of the first row, short of the linger: a relay that wrongly
    # lingered would send both rows in one round.
    await asyncio.sleep(1.0)
    second = await commit_row()  # one sent: no linger either
    await eventually(lambda: len(relay.rounds) >= 2, what="two rounds")
    assert relay.rounds == [[first], [second]]
    # Past the round that marks the second row (MARK_DELAY): committed during that wait, the
    # third row could be read by that round before its NOTIFY woke the relay, and no round
    # would linger.
    await asyncio.sleep(1.0)
    third = await commit_row()  # two sent, the rate: this round lingers
    await asyncio.sleep(0.2)
    fourth = await commit_row()
    await eventually(lambda: len(relay.rounds) >= 3, what="a third round")
    assert relay.rounds == [[first], [second], [third, fourth]]


@pytest.fixture
async def handing_relay(
    infra: Endpoints, store_dsn: str
) -> AsyncIterator[tuple[RoundsRecorded, Connection]]:
    """A relay whose only read is its first (the fallback read comes every 30 s), and a
    writer's connection."""
    settings = RelaySettings(lease_key=12, poll_interval=30.0)
    relay = RoundsRecorded(store_dsn, infra.kafka, settings, name="test-handover")
    relay.rounds = []
    task = asyncio.create_task(relay.run())
    conn = await asyncpg.connect(store_dsn)
    try:
        await eventually(lambda: relay.calls > 0, what="the relay's first read")
        yield relay, conn
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()


def first_copies(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))


async def commit_and_read_back(
    infra: Endpoints,
    topics: TopicSettings,
    conn: Connection,
    listeners: Sequence[CommitListener | None],
    *,
    in_transaction: bool = False,
    within: float = 30,
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """One write of one row per listener (None: nothing handed over), all to one key; the
    message ids committed, and those on Kafka once all of them are there."""
    key = f"acct-{uuid.uuid4().hex[:8]}"
    tap = await TopicTap(infra.kafka, topics.account_commands).start()
    try:
        sent = []
        for listener in listeners:
            deposit = DepositMoney(account_id=key, amount="1.00")
            message = OutboxMessage(topics.account_commands, key, envelope_for(deposit))
            if in_transaction:
                async with conn.transaction():
                    await write(conn, Changes(outbox=[message]), listener)
            else:
                await write(conn, Changes(outbox=[message]), listener)
            sent.append(message.envelope.message_id)
        received = await tap.wait_for(keyed(key), count=len(sent), within=within)
    finally:
        await tap.stop()
    return sent, [r.envelope.message_id for r in received]


async def test_rows_handed_over_by_their_writer_are_sent_without_a_read_and_marked(
    infra: Endpoints,
    store_dsn: str,
    relay_topics: TopicSettings,
    handing_relay: tuple[RoundsRecorded, Connection],
) -> None:
    relay, conn = handing_relay
    sent, received = await commit_and_read_back(infra, relay_topics, conn, [relay] * 5)
    await eventually(lambda: _is_zero(unpublished(store_dsn)), what="rows marked published")
    assert received == sent
    assert relay.calls == 1  # its first read, before the rows: no read sent them
    assert relay.rounds == []


async def test_commits_that_hand_nothing_over_between_handed_ones_keep_the_order(
    infra: Endpoints,
    relay_topics: TopicSettings,
    handing_relay: tuple[RoundsRecorded, Connection],
) -> None:
    relay, conn = handing_relay
    # Every third commit tells the relay nothing, like another instance's: the relay must read
    # it from the outbox before it sends the handed rows committed after it.
    listeners = [None if i % 3 == 1 else relay for i in range(30)]
    sent, received = await commit_and_read_back(infra, relay_topics, conn, listeners)
    # Never reordered (a late copy would be a duplicate, which the consumers drop).
    assert first_copies(received) == sent
    assert relay.calls > 1  # it did read the others


class HandsNothingOver:
    """A writer that NOTIFYs with the relay's token but is cancelled before it hands its rows
    over; or, inside a transaction, is never asked to."""

    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay
        self.tokens: list[str] = []
        self.handed = 0

    def token(self) -> str:
        self.tokens.append(self.relay.token())
        return self.tokens[-1]

    def committed(self, token: str, rows: Sequence[OutboxRow]) -> None:
        self.handed += 1


async def test_rows_whose_writer_never_hands_them_over_are_read_after_the_wait(
    infra: Endpoints,
    relay_topics: TopicSettings,
    handing_relay: tuple[RoundsRecorded, Connection],
) -> None:
    relay, conn = handing_relay
    silent = HandsNothingOver(relay)
    # The fallback read comes every 30 s: within a few seconds, only the wait can send it.
    sent, received = await commit_and_read_back(infra, relay_topics, conn, [silent], within=5)
    assert silent.tokens  # it NOTIFYed as a handing writer does
    assert received == sent
    assert len(relay.rounds) == 1  # a read sent it


async def test_a_write_inside_a_transaction_hands_nothing_over_and_is_read(
    infra: Endpoints,
    relay_topics: TopicSettings,
    handing_relay: tuple[RoundsRecorded, Connection],
) -> None:
    relay, conn = handing_relay
    spy = HandsNothingOver(relay)
    # Not committed when the statement ends: its rows must not be handed over then.
    sent, received = await commit_and_read_back(
        infra, relay_topics, conn, [spy], in_transaction=True, within=5
    )
    assert received == sent
    assert spy.tokens == []
    assert spy.handed == 0
    assert len(relay.rounds) == 1  # a read sent it


async def test_concurrent_writers_whose_ids_and_commits_interleave_keep_each_stream_in_order(
    infra: Endpoints,
    store_dsn: str,
    relay_topics: TopicSettings,
    relay: Callable[..., OutboxRelay],
) -> None:
    """Eight streams written at once on connections of their own, each version after the last
    one committed (as a stream's writer must). Half the writes hold their transaction open a
    moment after taking their outbox ids, so ids are taken in one order and committed in
    another; the other half hand their rows over at once. Each stream reaches Kafka in
    order."""
    publisher = relay(SETTINGS)
    task = asyncio.create_task(publisher.run())
    streams = [f"acct-{uuid.uuid4().hex[:8]}" for _ in range(8)]
    committed: list[uuid.UUID] = []

    async def write_stream(stream: str, n: int) -> None:
        conn = await asyncpg.connect(store_dsn)
        try:
            for version in range(1, VERSIONS + 1):
                event = seal_events(
                    [
                        MoneyDeposited(
                            account_id=stream,
                            amount="1",
                            balance_after=str(version),
                            description=None,
                        )
                    ],
                    cause=uuid.uuid4(),
                    correlation_id=uuid.uuid4(),
                    stream_id=stream,
                    after_version=version - 1,
                    occurred_at=datetime.now(UTC),
                )
                message = OutboxMessage(relay_topics.account_events, stream, event[0])
                if (n + version) % 2:
                    async with conn.transaction():
                        await write(conn, Changes(events=event, outbox=[message]))
                        await asyncio.sleep(random.uniform(0, 0.015))
                else:
                    await write(conn, Changes(events=event, outbox=[message]), publisher)
                committed.append(message.envelope.message_id)
        finally:
            await conn.close()

    tap = await TopicTap(infra.kafka, relay_topics.account_events).start()
    try:
        await asyncio.gather(*(write_stream(s, n) for n, s in enumerate(streams)))
        await tap.wait_for(lambda r: r.key in streams, count=len(streams) * VERSIONS)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await tap.stop()
    conn = await asyncpg.connect(store_dsn)
    try:
        rows = await conn.fetch("SELECT message_id, id FROM outbox")
        ids: dict[uuid.UUID, int] = {r["message_id"]: r["id"] for r in rows}
    finally:
        await conn.close()
    in_commit_order = [ids[m] for m in committed]
    assert in_commit_order != sorted(in_commit_order), "ids were committed in their own order"
    assert versions_by_stream(tap, streams) == {s: list(range(1, VERSIONS + 1)) for s in streams}


VERSIONS = 6
