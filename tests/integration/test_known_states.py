"""Batches decided from the states a store last knew, without reading them, on a real
PostgreSQL: written only when the write itself proves those states were current, and decided
again from a read otherwise (another writer got there first, a rejection, a message handled
before, an answer that moves nothing).

The handlers are driven directly, with two stores on one database where a test needs another
writer; the databases are the test's own, and no relay runs, so nothing reaches Kafka."""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from bank_accounts.account import BANK_ACCOUNT, AccountState
from bank_shared.contracts.accounts import DepositMoney, OpenAccount, WithdrawMoney
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Envelope
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.eventstore.store import Changes, OutboxMessage, PostgresStorage
from bank_shared.eventstore.unit_of_work import EventStore
from bank_shared.topics import TopicSettings
from bank_transfers_saga.handlers import on_step_outcomes, on_transfer_commands
from bank_transfers_saga.steps import SentStep, Steps
from bank_transfers_saga.transfer import TRANSFER, TransferState
from tests.support import Database, decide, envelope_for, fresh_topics, new_id, withdrawn

pytestmark = pytest.mark.integration

Pool = asyncpg.Pool  # asyncpg.Pool[Any] only in annotations (not subscriptable at run time)


@pytest.fixture
def topics() -> TopicSettings:
    return fresh_topics("known")


class Counted(PostgresStorage):
    """The event store's tables, with every read and write a store makes listed in `seen`."""

    def __init__(self, pool: Pool, seen: list[str]) -> None:
        super().__init__(Database(pool))
        self.seen = seen

    async def read_streams(self, stream_ids: Collection[str]) -> dict[str, list[Envelope]]:
        self.seen.append("read_streams")
        return await super().read_streams(stream_ids)

    async def read_answers(self, message_ids: Collection[UUID]) -> dict[UUID, OutboxMessage | None]:
        self.seen.append("read_answers")
        return await super().read_answers(message_ids)

    async def write(self, changes: Changes) -> None:
        self.seen.append("write")
        await super().write(changes)


class CountedSteps(Steps):
    def __init__(self, pool: Pool, topics: TopicSettings, seen: list[str], **options: Any) -> None:
        super().__init__(Database(pool), topics, **options)
        self.seen = seen

    async def read(self, command_ids: set[UUID]) -> dict[UUID, SentStep]:
        self.seen.append("read_steps")
        return await super().read(command_ids)


def accounts(
    pool: Pool, topics: TopicSettings, seen: list[str] | None = None, **options: Any
) -> EventStore[AccountState]:
    storage = Counted(pool, [] if seen is None else seen)
    return EventStore(storage, BANK_ACCOUNT, topics, events_topic="events", **options)


def opening(account: str, balance: str) -> OpenAccount:
    return OpenAccount(account_id=account, owner="Test", initial_balance=balance, owned_by=TELLER)


async def stored(pool: Pool, stream_id: str) -> list[tuple[int, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT version, event_type FROM events WHERE stream_id = $1 ORDER BY version",
            stream_id,
        )
    return [(r["version"], r["event_type"]) for r in rows]


def result(outcome: CommandOutcome) -> tuple[str, int | None, Decimal | None]:
    return outcome.status, outcome.version, outcome.balance


# --- the accounts service ---------------------------------------------------------------------


async def test_a_batch_of_known_accounts_is_decided_and_written_without_reading_them(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    seen: list[str] = []
    store = accounts(accounts_db, topics, seen)
    account = new_id("known")
    await decide(store, opening(account, "100"))
    seen.clear()

    [outcome] = await decide(store, DepositMoney(account_id=account, amount="25"))

    assert result(outcome) == ("accepted", 2, Decimal("125.00"))
    assert seen == ["write"], f"a known account was read again: {seen}"
    assert await stored(accounts_db, account) == [(1, "AccountOpened"), (2, "MoneyDeposited")]


async def test_an_account_another_writer_moved_on_is_read_again_and_decided_from_there(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    seen: list[str] = []
    ours = accounts(accounts_db, topics, seen, attempts=1)
    theirs = accounts(accounts_db, topics)
    account = new_id("moved")
    await decide(ours, opening(account, "100"))
    await decide(theirs, DepositMoney(account_id=account, amount="50"))
    seen.clear()

    # Ours still knows version 1 (balance 100): its append at version 2 is refused, and the
    # withdrawal is decided again from a read of version 2 (balance 150), in the one attempt.
    [outcome] = await decide(ours, WithdrawMoney(account_id=account, amount="30"))

    assert result(outcome) == ("accepted", 3, Decimal("120.00"))
    assert seen == ["write", "read_answers", "read_streams", "write"]
    assert await stored(accounts_db, account) == [
        (1, "AccountOpened"),
        (2, "MoneyDeposited"),
        (3, "MoneyWithdrawn"),
    ]


async def test_a_rejection_is_never_written_from_memory_but_decided_again_from_a_read(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    """From what ours knows (balance 100) the withdrawal of 150 is refused, and a refusal
    appends nothing that the database could refuse in turn: it must be decided from a read,
    which sees the other writer's deposit."""
    seen: list[str] = []
    ours, theirs = accounts(accounts_db, topics, seen), accounts(accounts_db, topics)
    account = new_id("refused")
    await decide(ours, opening(account, "100"))
    await decide(theirs, DepositMoney(account_id=account, amount="100"))
    seen.clear()

    [outcome] = await decide(ours, WithdrawMoney(account_id=account, amount="150"))

    assert result(outcome) == ("accepted", 3, Decimal("50.00"))
    assert seen == ["read_answers", "read_streams", "write"]


async def test_a_command_handled_before_gets_its_first_outcome_again_and_no_second_effect(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    seen: list[str] = []
    store = accounts(accounts_db, topics, seen, attempts=1)
    account = new_id("again")
    await decide(store, opening(account, "10"))
    deposit = DepositMoney(account_id=account, amount="5")
    copy = (envelope_for(deposit), deposit)
    [first] = await decide(store, copy)
    seen.clear()

    # The account is known: the copy is decided from memory as new, the processed-message key
    # refuses that write, and the copy is decided again from a read, in the one attempt.
    [again] = await decide(store, copy)

    assert seen == ["write", "read_answers", "read_streams", "write"]
    assert result(again) == result(first) == ("accepted", 2, Decimal("15.00"))
    assert await stored(accounts_db, account) == [(1, "AccountOpened"), (2, "MoneyDeposited")]


async def test_with_no_known_accounts_kept_every_batch_is_read(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    seen: list[str] = []
    store = accounts(accounts_db, topics, seen, known=0)
    account = new_id("unkept")
    await decide(store, opening(account, "100"))
    seen.clear()

    [outcome] = await decide(store, DepositMoney(account_id=account, amount="25"))

    assert result(outcome) == ("accepted", 2, Decimal("125.00"))
    assert seen == ["read_answers", "read_streams", "write"]


async def test_a_batch_over_two_accounts_one_of_them_moved_on_is_decided_from_a_read(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    ours, theirs = accounts(accounts_db, topics), accounts(accounts_db, topics)
    current, moved = new_id("current"), new_id("moved")
    await decide(ours, opening(current, "100"))
    await decide(ours, opening(moved, "100"))
    await decide(theirs, WithdrawMoney(account_id=moved, amount="60"))

    outcomes = await decide(
        ours,
        WithdrawMoney(account_id=current, amount="70"),
        WithdrawMoney(account_id=moved, amount="70"),
    )

    assert [(o.status, o.code, o.version) for o in outcomes] == [
        ("accepted", None, 2),
        ("rejected", "insufficient_funds", 2),
    ]
    assert await stored(accounts_db, current) == [(1, "AccountOpened"), (2, "MoneyWithdrawn")]
    assert await stored(accounts_db, moved) == [(1, "AccountOpened"), (2, "MoneyWithdrawn")]


# --- the transfers saga -----------------------------------------------------------------------


class Saga:
    """The saga's store and steps on one database, its reads and writes listed in `seen`."""

    def __init__(self, pool: Pool, topics: TopicSettings, **options: Any) -> None:
        self.seen: list[str] = []
        storage = Counted(pool, self.seen)
        self.transfers: EventStore[TransferState] = EventStore(
            storage, TRANSFER, topics, events_topic="transfer-events", **options
        )
        self.steps = CountedSteps(pool, topics, self.seen, known=options.get("known", 10_000))

    async def start(self, *starts: tuple[Envelope, StartTransfer]) -> list[CommandOutcome]:
        return await on_transfer_commands(self.transfers, self.steps, starts)

    async def answer(self, *answers: tuple[Envelope, CommandOutcome]) -> None:
        await on_step_outcomes(self.transfers, self.steps, answers)


def start_of(transfer_id: str, source: str) -> tuple[Envelope, StartTransfer]:
    start = StartTransfer(
        transfer_id=transfer_id,
        source_account_id=source,
        target_account_id=new_id("dst"),
        amount="10",
    )
    return envelope_for(start), start


async def started(saga: Saga) -> tuple[str, str]:
    transfer_id, source = new_id("t"), new_id("src")
    [outcome] = await saga.start(start_of(transfer_id, source))
    assert outcome.status == "accepted"
    return transfer_id, source


DEBITED = [(1, "TransferStarted"), (2, "TransferDebited")]


async def test_the_answer_for_a_known_transfer_is_decided_without_reading_it(
    transfers_db: Pool, topics: TopicSettings
) -> None:
    saga = Saga(transfers_db, topics)
    transfer_id, source = await started(saga)
    saga.seen.clear()

    await saga.answer(withdrawn(transfer_id, source))

    assert saga.seen == ["write"], f"a known transfer or step was read again: {saga.seen}"
    assert await stored(transfers_db, transfer_id) == DEBITED


async def test_with_no_known_transfers_kept_every_start_and_answer_is_read(
    transfers_db: Pool, topics: TopicSettings
) -> None:
    saga = Saga(transfers_db, topics, known=0)
    transfer_id, source = await started(saga)

    await saga.answer(withdrawn(transfer_id, source))

    assert saga.seen == [
        "read_answers",
        "read_streams",
        "write",
        "read_answers",
        "read_steps",
        "read_streams",
        "write",
    ]
    assert await stored(transfers_db, transfer_id) == DEBITED


async def test_a_start_for_a_transfer_another_instance_created_is_refused_as_existing(
    transfers_db: Pool, topics: TopicSettings
) -> None:
    """Ours does not know the transfer, so it takes the start as new; the database refuses its
    TransferStarted, and the start is decided again from a read, in the one attempt."""
    ours, theirs = Saga(transfers_db, topics, attempts=1), Saga(transfers_db, topics)
    transfer_id, source = await started(theirs)

    [outcome] = await ours.start(start_of(transfer_id, source))

    assert (outcome.status, outcome.code) == ("rejected", "transfer_already_exists")
    assert await stored(transfers_db, transfer_id) == [(1, "TransferStarted")]


async def test_an_answer_another_instance_applied_first_moves_the_transfer_once(
    transfers_db: Pool, topics: TopicSettings
) -> None:
    """Ours started the transfer and knows it at version 1; the other instance applied the
    withdraw answer (version 2). The same answer reaching ours (a redelivery after a
    rebalance) is decided from memory, refused by the database, read again, and seen."""
    ours, theirs = Saga(transfers_db, topics, attempts=1), Saga(transfers_db, topics)
    transfer_id, source = await started(ours)
    answer = withdrawn(transfer_id, source)
    await theirs.answer(answer)
    ours.seen.clear()

    await ours.answer(answer)

    assert ours.seen == ["write", "read_answers", "read_streams"]
    assert await stored(transfers_db, transfer_id) == DEBITED


async def test_an_answer_that_moves_nothing_is_decided_from_a_read(
    transfers_db: Pool, topics: TopicSettings
) -> None:
    """The same answer twice in one batch is one message, applied once from memory. A late
    copy (another message) moves nothing, which proves nothing: it is decided from a read."""
    saga = Saga(transfers_db, topics)
    transfer_id, source = await started(saga)
    answer = withdrawn(transfer_id, source)
    late = withdrawn(transfer_id, source)
    saga.seen.clear()

    await saga.answer(answer, answer)
    await saga.answer(late)

    assert saga.seen == ["write", "read_answers", "read_streams", "write"]
    assert await stored(transfers_db, transfer_id) == DEBITED
