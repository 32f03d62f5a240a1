"""Batches decided from the states a handler last knew, without reading them, on a real
PostgreSQL: written only when the write itself proves those states were current, and decided
again from a read otherwise (another writer got there first, a rejection, a message handled
before, an answer that moves nothing).

Handlers are driven directly, two of them on one database where a test needs another writer;
the databases are the test's own, and no relay runs, so nothing reaches Kafka."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

import bank_accounts.account as account_module
import bank_transfers_saga.saga as saga_module
from bank_accounts.account import AccountCommandHandler
from bank_shared.contracts.accounts import DepositMoney, OpenAccount, WithdrawMoney
from bank_shared.contracts.envelope import Envelope
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.contracts.transfers import StartTransfer
from bank_shared.eventstore.store import load_stream, save_changes
from bank_shared.topics import TopicSettings
from bank_transfers_saga.saga import TransferSaga
from tests.support import envelope_for, fresh_topics, new_id, withdrawn

pytestmark = pytest.mark.integration

Pool = asyncpg.Pool  # asyncpg.Pool[Any] only in annotations (not subscriptable at run time)


@pytest.fixture
def topics() -> TopicSettings:
    return fresh_topics("known")


def counted(call: Callable[..., Awaitable[Any]], name: str, seen: list[str]) -> Any:
    async def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(name)
        return await call(*args, **kwargs)

    return counting


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reads the two handlers make from now on, by the functions they call (so that the
    session's running services, which read on their own, are not counted)."""
    seen: list[str] = []
    for module, names in (
        (account_module, ("find_processed", "last_events")),
        (saga_module, ("find_processed", "load_streams", "load_steps")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, counted(getattr(module, name), name, seen))
    return seen


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The accounts handler's write statements from now on, refused ones included."""
    seen: list[str] = []
    monkeypatch.setattr(account_module, "save_changes", counted(save_changes, "write", seen))
    return seen


def command(message: OpenAccount | DepositMoney | WithdrawMoney) -> tuple[Envelope, Any]:
    return envelope_for(message), message


def opening(account: str, balance: str) -> tuple[Envelope, Any]:
    return command(OpenAccount(account_id=account, owner="Test", initial_balance=balance))


async def stored(pool: Pool, stream_id: str) -> list[tuple[int, str]]:
    async with pool.acquire() as conn:
        return [(e.version, e.envelope.type) for e in await load_stream(conn, stream_id)]


def result(outcome: CommandOutcome) -> tuple[str, int | None, Decimal | None]:
    return outcome.status, outcome.version, outcome.balance


# --- the accounts service ---------------------------------------------------------------------


async def test_a_batch_of_known_accounts_is_decided_and_written_without_reading_them(
    accounts_db: Pool, topics: TopicSettings, reads: list[str]
) -> None:
    handler = AccountCommandHandler(accounts_db, topics)
    account = new_id("known")
    await handler.handle(*opening(account, "100"))
    reads.clear()

    outcome = await handler.handle(*command(DepositMoney(account_id=account, amount="25")))

    assert result(outcome) == ("accepted", 2, Decimal("125.00"))
    assert reads == [], f"a known account was read again: {reads}"
    assert await stored(accounts_db, account) == [(1, "AccountOpened"), (2, "MoneyDeposited")]


async def test_an_account_another_writer_moved_on_is_read_again_and_decided_from_there(
    accounts_db: Pool, topics: TopicSettings, reads: list[str]
) -> None:
    ours = AccountCommandHandler(accounts_db, topics, max_conflict_retries=1)
    theirs = AccountCommandHandler(accounts_db, topics)
    account = new_id("moved")
    await ours.handle(*opening(account, "100"))
    await theirs.handle(*command(DepositMoney(account_id=account, amount="50")))
    reads.clear()

    # Ours still knows version 1 (balance 100): its append at version 2 is refused, and the
    # withdrawal is decided again from a read of version 2 (balance 150), in the one attempt.
    outcome = await ours.handle(*command(WithdrawMoney(account_id=account, amount="30")))

    assert result(outcome) == ("accepted", 3, Decimal("120.00"))
    assert reads == ["find_processed", "last_events"]
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
    ours, theirs = (
        AccountCommandHandler(accounts_db, topics),
        AccountCommandHandler(accounts_db, topics),
    )
    account = new_id("refused")
    await ours.handle(*opening(account, "100"))
    await theirs.handle(*command(DepositMoney(account_id=account, amount="100")))

    outcome = await ours.handle(*command(WithdrawMoney(account_id=account, amount="150")))

    assert result(outcome) == ("accepted", 3, Decimal("50.00"))


async def test_a_command_handled_before_gets_its_first_outcome_again_and_no_second_effect(
    accounts_db: Pool, topics: TopicSettings, reads: list[str], writes: list[str]
) -> None:
    handler = AccountCommandHandler(accounts_db, topics, max_conflict_retries=1)
    account = new_id("again")
    await handler.handle(*opening(account, "10"))
    deposit = command(DepositMoney(account_id=account, amount="5"))
    first = await handler.handle(*deposit)
    reads.clear()
    writes.clear()

    # The account is known: the copy is decided from memory as new, the processed-message key
    # refuses that write, and the copy is decided again from a read, in the one attempt.
    again = await handler.handle(*deposit)

    assert writes == ["write", "write"], "the write from memory was not tried, or not refused"
    assert reads == ["find_processed", "last_events"]
    assert result(again) == result(first) == ("accepted", 2, Decimal("15.00"))
    assert await stored(accounts_db, account) == [(1, "AccountOpened"), (2, "MoneyDeposited")]


async def test_with_no_known_accounts_kept_every_batch_is_read(
    accounts_db: Pool, topics: TopicSettings, reads: list[str]
) -> None:
    handler = AccountCommandHandler(accounts_db, topics, known_accounts=0)
    account = new_id("unkept")
    await handler.handle(*opening(account, "100"))
    reads.clear()

    outcome = await handler.handle(*command(DepositMoney(account_id=account, amount="25")))

    assert result(outcome) == ("accepted", 2, Decimal("125.00"))
    assert reads == ["find_processed", "last_events"]


async def test_a_batch_over_two_accounts_one_of_them_moved_on_is_decided_from_a_read(
    accounts_db: Pool, topics: TopicSettings
) -> None:
    ours, theirs = (
        AccountCommandHandler(accounts_db, topics),
        AccountCommandHandler(accounts_db, topics),
    )
    current, moved = new_id("current"), new_id("moved")
    await ours.handle(*opening(current, "100"))
    await ours.handle(*opening(moved, "100"))
    await theirs.handle(*command(WithdrawMoney(account_id=moved, amount="60")))

    outcomes = await ours.handle_batch(
        [
            command(WithdrawMoney(account_id=current, amount="70")),
            command(WithdrawMoney(account_id=moved, amount="70")),
        ]
    )

    assert [(o.status, o.code, o.version) for o in outcomes] == [
        ("accepted", None, 2),
        ("rejected", "insufficient_funds", 2),
    ]
    assert await stored(accounts_db, current) == [(1, "AccountOpened"), (2, "MoneyWithdrawn")]
    assert await stored(accounts_db, moved) == [(1, "AccountOpened"), (2, "MoneyWithdrawn")]


# --- the transfers saga -----------------------------------------------------------------------


def start_of(transfer_id: str, source: str) -> tuple[Envelope, StartTransfer]:
    start = StartTransfer(
        transfer_id=transfer_id,
        source_account_id=source,
        target_account_id=new_id("dst"),
        amount="10",
    )
    return envelope_for(start), start


async def started(saga: TransferSaga) -> tuple[str, str]:
    transfer_id, source = new_id("t"), new_id("src")
    [outcome] = await saga.start_batch([start_of(transfer_id, source)])
    assert outcome.status == "accepted"
    return transfer_id, source


async def test_the_answer_for_a_known_transfer_is_decided_without_reading_it(
    transfers_db: Pool, topics: TopicSettings, reads: list[str]
) -> None:
    saga = TransferSaga(transfers_db, topics)
    transfer_id, source = await started(saga)
    reads.clear()

    moved = await saga.answers_batch([withdrawn(transfer_id, source)])

    assert moved == 1
    assert reads == [], f"a known transfer or step was read again: {reads}"
    assert await stored(transfers_db, transfer_id) == [
        (1, "TransferStarted"),
        (2, "TransferDebited"),
    ]


async def test_with_no_known_transfers_kept_every_start_and_answer_is_read(
    transfers_db: Pool, topics: TopicSettings, reads: list[str]
) -> None:
    saga = TransferSaga(transfers_db, topics, known_transfers=0)
    transfer_id, source = await started(saga)

    moved = await saga.answers_batch([withdrawn(transfer_id, source)])

    assert moved == 1
    assert reads == [
        "find_processed",
        "load_streams",
        "load_steps",
        "find_processed",
        "load_streams",
    ]


async def test_a_start_for_a_transfer_another_instance_created_is_refused_as_existing(
    transfers_db: Pool, topics: TopicSettings
) -> None:
    """Ours does not know the transfer, so it takes the start as new; the database refuses its
    TransferStarted, and the start is decided again from a read, in the one attempt."""
    ours = TransferSaga(transfers_db, topics, max_conflict_retries=1)
    theirs = TransferSaga(transfers_db, topics)
    transfer_id, source = await started(theirs)

    [outcome] = await ours.start_batch([start_of(transfer_id, source)])

    assert (outcome.status, outcome.code) == ("rejected", "transfer_already_exists")
    assert await stored(transfers_db, transfer_id) == [(1, "TransferStarted")]


async def test_an_answer_another_instance_applied_first_moves_the_transfer_once(
    transfers_db: Pool, topics: TopicSettings, reads: list[str]
) -> None:
    """Ours started the transfer and knows it at version 1; the other instance applied the
    withdraw answer (version 2). The same answer reaching ours (a redelivery after a
    rebalance) is decided from memory, refused by the database, read again, and seen."""
    ours = TransferSaga(transfers_db, topics, max_conflict_retries=1)
    theirs = TransferSaga(transfers_db, topics)
    transfer_id, source = await started(ours)
    answer = withdrawn(transfer_id, source)
    assert await theirs.answers_batch([answer]) == 1
    reads.clear()

    assert await ours.answers_batch([answer]) == 0

    assert reads == ["load_steps", "find_processed", "load_streams"]
    assert await stored(transfers_db, transfer_id) == [
        (1, "TransferStarted"),
        (2, "TransferDebited"),
    ]


async def test_a_batch_with_an_answer_that_moves_nothing_is_decided_from_a_read(
    transfers_db: Pool, topics: TopicSettings, reads: list[str]
) -> None:
    """The same answer twice in one batch: the copy moves nothing, so nothing of the batch is
    written from memory; read, the answer moves the transfer once."""
    saga = TransferSaga(transfers_db, topics)
    transfer_id, source = await started(saga)
    answer = withdrawn(transfer_id, source)
    reads.clear()

    assert await saga.answers_batch([answer, answer]) == 1

    assert reads == ["load_steps", "find_processed", "load_streams"]
    assert await stored(transfers_db, transfer_id) == [
        (1, "TransferStarted"),
        (2, "TransferDebited"),
    ]
