"""Snapshots and crashes: the accounts service, taking a snapshot every 3 events, is killed
(SIGKILL) while it decides a stream of deposits and withdrawals on a few accounts. Restarted,
it finishes the stream; every account then loads from its snapshot as the fold of its events,
which is what `decide` and `evolve` alone make of the commands sent to it, in order."""

from __future__ import annotations

import random
import signal
from typing import Any, TypeAlias

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bank_accounts.account import BANK_ACCOUNT, INITIAL, AccountState, decide, evolve
from bank_accounts.settings import AccountsSettings
from bank_deploy.providers import Endpoints, free_port
from bank_shared.contracts.accounts import (
    AccountCommand,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
)
from bank_shared.contracts.actors import BANK_TELLER, TELLER
from bank_shared.contracts.envelope import Envelope, to_bytes
from bank_shared.contracts.outcomes import Rejection
from bank_shared.eventstore.snapshots import SnapshotRow, read_from_snapshots
from bank_shared.eventstore.store import read_streams
from bank_shared.eventstore.unit_of_work import Stream
from tests.support import (
    ServiceProcess,
    account_store,
    envelope_for,
    eventually,
    fresh_topics,
    new_id,
    service_env,
)

pytestmark = pytest.mark.integration

Pool: TypeAlias = "asyncpg.Pool[Any]"

EVERY = 3
COMMANDS = 3400
# Sent before the kill (far more than it decides before it is killed); the rest after it, so
# that every account moves on after the restart.
BEFORE_KILL = 3000


def accounts_process(env: dict[str, str]) -> ServiceProcess:
    port = free_port()
    return ServiceProcess("bank_accounts", env | {"BANK_ACCOUNTS_HTTP_PORT": str(port)}, port)


def the_commands(accounts: list[str], rng: random.Random) -> list[AccountCommand]:
    """Each account opened, then deposits and withdrawals on any of them; a withdrawal is
    refused when it is more than the balance."""
    commands: list[AccountCommand] = [
        OpenAccount(account_id=a, owner="Crash", initial_balance="50.00", owned_by=TELLER)
        for a in accounts
    ]
    while len(commands) < COMMANDS:
        account = rng.choice(accounts)
        amount = f"{rng.randint(100, 6000) / 100:.2f}"
        if rng.random() < 0.5:
            commands.append(DepositMoney(account_id=account, amount=amount))
        else:
            commands.append(WithdrawMoney(account_id=account, amount=amount))
    return commands


def decided_alone(commands: list[AccountCommand], account: str) -> tuple[AccountState, int]:
    """The state and the number of events `decide` and `evolve` make of the account's
    commands, in the order they were sent (one key, one partition: the order consumed)."""
    state, version = INITIAL, 0
    for command in commands:
        if command.account_id != account:
            continue
        decision = decide(command, state, BANK_TELLER)
        if not isinstance(decision, Rejection):
            for event in decision:
                state, version = evolve(state, event), version + 1
    return state, version


async def test_accounts_killed_while_taking_snapshots_load_from_them_as_their_full_fold(
    isolated: Endpoints, producer: AIOKafkaProducer
) -> None:
    topics = fresh_topics("snapcrash", partitions=2)
    env = service_env(isolated.kafka, isolated.pg, topics) | {
        "BANK_ACCOUNTS_CONSUMER_GROUP": f"{topics.account_commands}.accounts",
        "BANK_ACCOUNTS_SNAPSHOT_EVERY": str(EVERY),
        "BANK_ACCOUNTS_RELAY_POLL_INTERVAL": "0.1",
        # The killed process's lease runs out this soon, and the restarted one publishes.
        "BANK_ACCOUNTS_RELAY_LEASE_DURATION": "1",
    }
    accounts = [new_id(f"snapcrash{i}") for i in range(4)]
    commands = the_commands(accounts, random.Random(20261207))
    sent = [(envelope_for(command), command) for command in commands]
    pool = await asyncpg.create_pool(AccountsSettings(pg=isolated.pg).dsn, min_size=1, max_size=2)
    try:
        doomed = accounts_process(env)
        await (await doomed.start()).wait_ready(within=120)
        await send_all(producer, topics.account_commands, sent[:BEFORE_KILL])

        async def deciding_and_snapshotting() -> bool:
            processed, snapshots = await processed_and_snapshots(pool, accounts)
            return processed >= 60 and snapshots >= 1

        await eventually(deciding_and_snapshotting, within=120, what="snapshots before the kill")
        assert doomed.process is not None
        doomed.process.kill()
        assert await doomed.wait_exit() == -signal.SIGKILL
        processed_at_kill, snapshots_at_kill = await processed_and_snapshots(pool, accounts)
        # Killed part-way through the commands it had, after it had written snapshots.
        assert processed_at_kill < BEFORE_KILL
        assert snapshots_at_kill >= 1
        versions_at_kill = await stream_versions(pool, accounts)

        restarted = accounts_process(env)
        await restarted.start()
        try:
            await restarted.wait_ready(within=120)
            await send_all(producer, topics.account_commands, sent[BEFORE_KILL:])

            async def every_command_processed() -> bool:
                processed, _ = await processed_and_snapshots(pool, accounts)
                return processed == COMMANDS

            await eventually(every_command_processed, within=240, what="the rest of the stream")

            async def snapshots_after_the_kill() -> bool:
                # Each account passed a multiple of 3 since the restart: the restarted service
                # wrote a snapshot of it too.
                rows = await snapshot_rows(pool, accounts)
                return rows.keys() == set(accounts) and all(
                    rows[a].version > versions_at_kill.get(a, 0) for a in accounts
                )

            await eventually(snapshots_after_the_kill, within=120, what="snapshots after the kill")
        finally:
            await restarted.stop()

        reader = account_store(pool, topics, known=0, snapshot_every=EVERY)
        assert reader.snapshots is not None
        async with pool.acquire() as conn:
            histories = await read_streams(conn, accounts)
            found = await read_from_snapshots(conn, accounts, reader.snapshots.fingerprint)

        loaded = await reader.read(accounts)

        for account in accounts:
            events = histories[account]
            state, version = decided_alone(commands, account)
            assert (BANK_ACCOUNT.fold(events), len(events)) == (state, version), account
            assert loaded[account] == Stream(state, version), account
            # Loaded from the snapshot the services wrote: this code trusts it, it is the fold
            # at its version, and the query gave only the events after it.
            snapshot, tail = found[account]
            assert snapshot is not None
            assert snapshot.fingerprint == reader.snapshots.fingerprint
            assert reader.snapshots.restore(snapshot) == BANK_ACCOUNT.fold(
                events[: snapshot.version]
            )
            assert tail == events[snapshot.version :]
    finally:
        await pool.close()


async def send_all(
    producer: AIOKafkaProducer, topic: str, batch: list[tuple[Envelope, AccountCommand]]
) -> None:
    """Each command keyed by its account, so that an account's commands stay in order."""
    for envelope, command in batch:
        await producer.send(topic, value=to_bytes(envelope), key=command.account_id.encode())
    await producer.flush()


async def processed_and_snapshots(pool: Pool, accounts: list[str]) -> tuple[int, int]:
    processed = await pool.fetchval("SELECT count(*) FROM processed_messages")
    snapshots = await pool.fetchval(
        "SELECT count(*) FROM snapshots WHERE stream_id = ANY($1::text[])", accounts
    )
    return processed, snapshots


async def snapshot_rows(pool: Pool, accounts: list[str]) -> dict[str, SnapshotRow]:
    rows = await pool.fetch(
        "SELECT stream_id, version, fingerprint, state, checksum FROM snapshots"
        " WHERE stream_id = ANY($1::text[])",
        accounts,
    )
    return {r["stream_id"]: SnapshotRow(**r) for r in rows}


async def stream_versions(pool: Pool, accounts: list[str]) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT stream_id, max(version) AS version FROM events"
        " WHERE stream_id = ANY($1::text[]) GROUP BY stream_id",
        accounts,
    )
    return {r["stream_id"]: r["version"] for r in rows}
