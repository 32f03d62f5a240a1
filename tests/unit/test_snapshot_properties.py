"""Property: a stream loaded from a snapshot and the events after it is exactly the fold of its
whole history, whatever the history, the snapshot interval and the version the snapshot was
taken at; for bank accounts (random commands, rejected ones too) and for transfers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from bank_accounts.account import BANK_ACCOUNT, INITIAL, decide, evolve
from bank_accounts.handlers import on_account_commands
from bank_shared.contracts.accounts import (
    AccountCommand,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
)
from bank_shared.contracts.actors import BANK_TELLER, TELLER, Actor
from bank_shared.contracts.envelope import Envelope, Message, seal_events
from bank_shared.contracts.outcomes import Rejection
from bank_shared.contracts.transfers import (
    TransferCompleted,
    TransferCreditRefused,
    TransferDebited,
    TransferEvent,
    TransferFailed,
    TransferStarted,
)
from bank_shared.eventstore.unit_of_work import Aggregate, EventStore, Stream
from bank_shared.topics import TopicSettings
from bank_transfers_saga.transfer import TRANSFER
from tests.memory import InMemoryStorage
from tests.support import envelope_for

S = TypeVar("S")

ACCOUNT = "acct-1"
TRANSFER_ID = "transfer-1"

# --- random histories ------------------------------------------------------------------------

# Small amounts, so that withdrawals are often more than the balance and are refused.
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("300.00"), places=2)
descriptions = st.sampled_from([None, "Rent", "Dîner à Paris"])
opening = st.builds(
    OpenAccount,
    account_id=st.just(ACCOUNT),
    owner=st.just("Ada"),
    initial_balance=amounts,
    owned_by=st.just(TELLER),
)
account_commands: st.SearchStrategy[AccountCommand] = st.one_of(
    opening,  # again: refused
    st.builds(DepositMoney, account_id=st.just(ACCOUNT), amount=amounts, description=descriptions),
    st.builds(WithdrawMoney, account_id=st.just(ACCOUNT), amount=amounts, description=descriptions),
)
account_histories = st.one_of(
    # Most open the account first, so that they have events to take snapshots of...
    st.tuples(opening, st.lists(account_commands, min_size=10, max_size=40)).map(
        lambda first_then: [first_then[0], *first_then[1]]
    ),
    # ... and some use it before it is opened: refused.
    st.lists(account_commands, max_size=10),
)
stream_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)


@st.composite
def transfer_histories(draw: st.DrawFn) -> list[TransferEvent]:
    """A transfer's events along one of the paths its saga can take (the states include free
    text, so their JSON is tested on any character)."""
    amount = draw(amounts)
    started = TransferStarted(
        transfer_id=TRANSFER_ID,
        source_account_id=draw(stream_names),
        target_account_id=draw(stream_names),
        amount=amount,
        description=draw(st.none() | st.text(max_size=40)),
        requested_by=draw(st.sampled_from([BANK_TELLER, Actor(subject="ada", role="customer")])),
    )
    debited = TransferDebited(transfer_id=TRANSFER_ID, source_account_id="s", amount=amount)
    refused = TransferCreditRefused(transfer_id=TRANSFER_ID, reason="target_account_not_found")
    paths: list[list[TransferEvent]] = [
        [],
        [TransferFailed(transfer_id=TRANSFER_ID, reason="insufficient_funds")],
        [debited],
        [debited, TransferCompleted(transfer_id=TRANSFER_ID)],
        [debited, refused],
        [
            debited,
            refused,
            TransferFailed(
                transfer_id=TRANSFER_ID, reason="target_account_not_found", refunded=True
            ),
        ],
    ]
    return [started, *draw(st.sampled_from(paths))]


def sealed(stream_id: str, events: Sequence[Message]) -> list[Envelope]:
    return seal_events(
        events,
        cause=uuid4(),
        correlation_id=uuid4(),
        stream_id=stream_id,
        after_version=0,
        occurred_at=datetime.now(UTC),
    )


def account_events(commands: Sequence[AccountCommand]) -> list[Message]:
    """What the commands decide, one after the other, with `decide` and `evolve` alone."""
    events: list[Message] = []
    state = INITIAL
    for command in commands:
        decision = decide(command, state, BANK_TELLER)
        if not isinstance(decision, Rejection):
            for event in decision:
                state = evolve(state, event)
                events.append(event)
    return events


# --- the stores --------------------------------------------------------------------------------


def store_on(storage: InMemoryStorage, aggregate: Aggregate[S], *, every: int) -> EventStore[S]:
    """A store with snapshots that keeps no state in memory: every unit of work reads."""
    return EventStore(
        storage,
        aggregate,
        TopicSettings(),
        events_topic="events",
        known=0,
        snapshot_every=every,
    )


def reader_on(storage: InMemoryStorage, aggregate: Aggregate[S]) -> EventStore[S]:
    """A store that only reads: each stream from its snapshot and the events after it."""
    return store_on(storage, aggregate, every=1)


async def loaded(reader: EventStore[S], stream_id: str) -> Stream[S]:
    return (await reader.read([stream_id]))[stream_id]


async def snapshot_reaches(storage: InMemoryStorage, stream_id: str, version: int) -> None:
    """Let the store's background writer run until the stream's snapshot is at `version`
    (0: none); in memory it needs a few turns of the loop, never a wait on the clock."""
    for _ in range(100):
        row = storage.snapshots.get(stream_id)
        if (row.version if row else 0) == version:
            return
        await asyncio.sleep(0)
    row = storage.snapshots.get(stream_id)
    raise AssertionError(f"snapshot of {stream_id} at {row and row.version}, expected {version}")


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


# --- accounts, as the service decides them ----------------------------------------------------


@settings(deadline=None, max_examples=60)
@given(commands=account_histories, every=st.integers(min_value=1, max_value=20))
def test_an_account_decided_from_snapshots_ends_where_decide_and_evolve_alone_end(
    commands: list[AccountCommand], every: int
) -> None:
    """Each command decided by the accounts handler over a store that reads every stream from
    its snapshot (no states kept in memory), with the snapshot writer running: after each,
    the loaded state equals the fold of the whole history, and the answers are those of
    `decide` and `evolve` alone."""

    async def scenario() -> None:
        storage = InMemoryStorage()
        store = store_on(storage, BANK_ACCOUNT, every=every)
        assert store.snapshots is not None
        writer = asyncio.create_task(store.snapshots.write_forever(storage))
        reader = reader_on(storage, BANK_ACCOUNT)
        model = INITIAL
        try:
            for command in commands:
                [outcome] = await on_account_commands(store, [(envelope_for(command), command)])
                decision = decide(command, model, BANK_TELLER)
                if isinstance(decision, Rejection):
                    assert (outcome.status, outcome.code) == ("rejected", decision.code)
                else:
                    for event in decision:
                        model = evolve(model, event)
                    assert (outcome.status, outcome.balance) == ("accepted", model.balance)
                history = storage.events.get(ACCOUNT, [])
                version = len(history)
                # One event a command: the policy takes one at each multiple of `every`.
                await snapshot_reaches(storage, ACCOUNT, version // every * every)

                assert await loaded(reader, ACCOUNT) == Stream(BANK_ACCOUNT.fold(history), version)
                assert BANK_ACCOUNT.fold(history) == model
                if row := storage.snapshots.get(ACCOUNT):
                    # The snapshot the load started from is trusted, and right at its version.
                    assert store.snapshots.restore(row) == BANK_ACCOUNT.fold(history[: row.version])
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    run(scenario())


# --- any snapshot version, any stream length ---------------------------------------------------


async def check_every_snapshot_of(
    aggregate: Aggregate[S], stream_id: str, history: list[Envelope]
) -> None:
    """For each length of the stream and each version of a snapshot within it (0: none), the
    load from that snapshot and the events after it equals the fold of that many events."""
    storage = InMemoryStorage()
    reader = reader_on(storage, aggregate)
    assert reader.snapshots is not None
    for length in range(len(history) + 1):
        expected = Stream(aggregate.fold(history[:length]), length)
        for at in range(length + 1):
            storage.events[stream_id] = history[:length]
            storage.snapshots.clear()
            if at:
                state = aggregate.fold(history[:at])
                storage.snapshots[stream_id] = reader.snapshots.row(stream_id, at, state)

            assert await loaded(reader, stream_id) == expected


@settings(deadline=None, max_examples=40)
@given(commands=account_histories)
def test_an_account_loads_the_same_from_a_snapshot_at_any_version(
    commands: list[AccountCommand],
) -> None:
    history = sealed(ACCOUNT, account_events(commands)[:20])
    run(check_every_snapshot_of(BANK_ACCOUNT, ACCOUNT, history))


@settings(deadline=None, max_examples=60)
@given(events=transfer_histories())
def test_a_transfer_loads_the_same_from_a_snapshot_at_any_version(
    events: list[TransferEvent],
) -> None:
    run(check_every_snapshot_of(TRANSFER, TRANSFER_ID, sealed(TRANSFER_ID, events)))


# --- transfers, written as the saga writes them ----------------------------------------------


@settings(deadline=None, max_examples=60)
# A transfer has at most 4 events: a longer interval would never take a snapshot of it.
@given(events=transfer_histories(), every=st.integers(min_value=1, max_value=5))
def test_a_transfer_written_one_event_at_a_time_loads_as_its_full_fold(
    events: list[TransferEvent], every: int
) -> None:
    """Each event appended in a unit of work of its own, as the saga does, with the snapshot
    writer running: after each, the loaded state equals the fold of the whole history."""

    async def scenario() -> None:
        storage = InMemoryStorage()
        store = store_on(storage, TRANSFER, every=every)
        assert store.snapshots is not None
        writer = asyncio.create_task(store.snapshots.write_forever(storage))
        reader = reader_on(storage, TRANSFER)
        try:
            for event in events:
                cause = envelope_for(event)
                async for uow in store.attempts([(cause, event)]):
                    await uow.load([TRANSFER_ID])
                    uow.react(cause, TRANSFER_ID, [event])
                    await uow.commit()
                history = storage.events[TRANSFER_ID]
                await snapshot_reaches(storage, TRANSFER_ID, len(history) // every * every)

                assert await loaded(reader, TRANSFER_ID) == Stream(
                    TRANSFER.fold(history), len(history)
                )
                if row := storage.snapshots.get(TRANSFER_ID):
                    assert store.snapshots.restore(row) == TRANSFER.fold(history[: row.version])
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    run(scenario())
