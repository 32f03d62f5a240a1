"""The accounts service over the real broker and database: effects, outcomes, idempotency,
concurrency and poison messages."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer

from bank_accounts.account import BANK_ACCOUNT
from bank_accounts.settings import AccountsSettings
from bank_shared.contracts.accounts import (
    DepositMoney,
    MoneyDeposited,
    OpenAccount,
    WithdrawMoney,
)
from bank_shared.contracts.actors import TELLER
from bank_shared.contracts.envelope import Envelope, to_bytes
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from tests.support import (
    TopicTap,
    account_store,
    caused_by,
    decide,
    envelope_for,
    history,
    new_id,
    send,
)

pytestmark = pytest.mark.integration


async def stored_stream(settings: AccountsSettings, account_id: str) -> list[tuple[int, str]]:
    return [(e.stream_version or 0, e.type) for e in await history(settings.dsn, account_id)]


async def test_a_command_yields_its_events_in_the_store_on_the_topic_and_one_outcome(
    accounts_settings: AccountsSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
    account_events: TopicTap,
) -> None:
    account = new_id("alice")
    opening = envelope_for(
        OpenAccount(account_id=account, owner="Alice", initial_balance="100", owned_by=TELLER)
    )
    deposit = envelope_for(DepositMoney(account_id=account, amount="50.25"))
    await send(producer, topics.account_commands, account, opening)
    await send(producer, topics.account_commands, account, deposit)

    [outcome] = await outcomes.wait_for(caused_by(deposit.message_id))
    answer = outcome.message
    assert isinstance(answer, CommandOutcome)
    assert (answer.status, answer.version, answer.balance) == ("accepted", 2, Decimal("150.25"))

    assert await stored_stream(accounts_settings, account) == [
        (1, "AccountOpened"),
        (2, "MoneyDeposited"),
    ]
    published = await account_events.wait_for(lambda r: r.key == account, count=2)
    assert [(r.envelope.stream_version, r.envelope.type) for r in published] == [
        (1, "AccountOpened"),
        (2, "MoneyDeposited"),
    ]
    deposited = published[1].message
    assert isinstance(deposited, MoneyDeposited)
    assert deposited.balance_after == Decimal("150.25")

    # Exactly one outcome per command: a later command of the same account is a barrier,
    # since its outcome lands after theirs in the same partition.
    await barrier(producer, topics, outcomes, account)
    assert len(outcomes.matching(caused_by(opening.message_id))) == 1
    assert len(outcomes.matching(caused_by(deposit.message_id))) == 1


async def barrier(
    producer: AIOKafkaProducer, topics: TopicSettings, outcomes: TopicTap, account: str
) -> None:
    """Send one more command for `account` and wait for its outcome: every outcome of the
    account's earlier commands is on the topic (and in the tap) before it."""
    probe = envelope_for(DepositMoney(account_id=account, amount="0.01"))
    await send(producer, topics.account_commands, account, probe)
    await outcomes.wait_for(caused_by(probe.message_id))


async def test_the_same_command_delivered_three_times_has_one_effect_and_three_same_outcomes(
    accounts_settings: AccountsSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
) -> None:
    account = new_id("bob")
    await send(
        producer,
        topics.account_commands,
        account,
        envelope_for(OpenAccount(account_id=account, owner="Bob", owned_by=TELLER)),
    )
    deposit = envelope_for(DepositMoney(account_id=account, amount="10.00"))
    await send(producer, topics.account_commands, account, to_bytes(deposit))
    await outcomes.wait_for(caused_by(deposit.message_id))
    # The copies come after the first one committed: they must be recognised in the store,
    # not merely inside one batch.
    for _ in range(2):
        await send(producer, topics.account_commands, account, to_bytes(deposit))

    answers = await outcomes.wait_for(caused_by(deposit.message_id), count=3)
    assert len({a.value for a in answers}) == 1, "the three outcomes differ"
    answer = answers[0].message
    assert isinstance(answer, CommandOutcome)
    assert (answer.status, answer.version, answer.balance) == ("accepted", 2, Decimal("10.00"))
    assert await stored_stream(accounts_settings, account) == [
        (1, "AccountOpened"),
        (2, "MoneyDeposited"),
    ]


async def test_fifty_withdrawals_through_kafka_against_100_leave_exactly_ten_accepted(
    accounts_settings: AccountsSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
) -> None:
    account = new_id("carol")
    await send(
        producer,
        topics.account_commands,
        account,
        envelope_for(
            OpenAccount(account_id=account, owner="Carol", initial_balance="100", owned_by=TELLER)
        ),
    )
    withdrawals = [
        envelope_for(WithdrawMoney(account_id=account, amount="10.00")) for _ in range(50)
    ]
    await asyncio.gather(
        *(send(producer, topics.account_commands, account, w) for w in withdrawals)
    )

    ids = {w.message_id for w in withdrawals}
    answers = await outcomes.wait_for(lambda r: r.envelope.causation_id in ids, count=50)
    results = [a.message for a in answers]
    assert all(isinstance(r, CommandOutcome) for r in results)
    statuses = sorted((r.status, r.code) for r in results if isinstance(r, CommandOutcome))
    assert statuses == [("accepted", None)] * 10 + [("rejected", "insufficient_funds")] * 40
    assert await balance_in_store(accounts_settings, account) == Decimal("0.00")


async def test_fifty_concurrent_handlers_on_one_account_conflict_and_retry_without_loss(
    accounts: Platform, accounts_settings: AccountsSettings
) -> None:
    """Bypasses Kafka's per-partition ordering: 50 transactions race on one stream, so the
    version check and the retry from a fresh load are what keep the balance right."""
    store = account_store(accounts.pool, accounts_settings.topics, attempts=100)
    account = new_id("dave")
    await decide(store, opened(account, "100"))
    # Every connection of the pool opened first. Otherwise, on a busy machine, the handlers can
    # run one after another on the one open connection while the others are still connecting,
    # and never race.
    held = [await accounts.pool.acquire() for _ in range(accounts.pool.get_max_size())]
    for conn in held:
        await accounts.pool.release(conn)
    withdrawals = [
        envelope_for(WithdrawMoney(account_id=account, amount="10.00")) for _ in range(50)
    ]
    results = await asyncio.gather(
        *(decide(store, (w, WithdrawMoney.model_validate(w.payload))) for w in withdrawals)
    )
    assert store.conflicts > 0, "no write was refused: the version check was not raced"
    assert sorted((r.status, r.code) for [r] in results) == (
        [("accepted", None)] * 10 + [("rejected", "insufficient_funds")] * 40
    )
    assert sorted(r.version or 0 for [r] in results if r.accepted) == list(range(2, 12))
    assert await balance_in_store(accounts_settings, account) == Decimal("0.00")


def opened(account: str, balance: str) -> tuple[Envelope, OpenAccount]:
    command = OpenAccount(
        account_id=account, owner="Test", initial_balance=balance, owned_by=TELLER
    )
    return envelope_for(command), command


async def balance_in_store(settings: AccountsSettings, account: str) -> Decimal:
    return BANK_ACCOUNT.fold(await history(settings.dsn, account)).balance


async def test_a_poison_message_is_dead_lettered_and_the_next_command_still_processed(
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
    dead_letters: TopicTap,
) -> None:
    account = new_id("erin")
    garbage = f"not json {uuid.uuid4()}".encode()
    unknown = to_bytes(
        envelope_for(OpenAccount(account_id=account, owner="Erin", owned_by=TELLER))
    ).replace(b'"OpenAccount"', b'"OpenVault"')
    good = envelope_for(
        OpenAccount(account_id=account, owner="Erin", initial_balance="5", owned_by=TELLER)
    )
    for raw in (garbage, unknown, to_bytes(good)):
        await send(producer, topics.account_commands, account, raw)

    [answer] = await outcomes.wait_for(caused_by(good.message_id))
    assert isinstance(answer.message, CommandOutcome)
    assert answer.message.status == "accepted"
    letters = await dead_letters.wait_for(lambda r: r.value in (garbage, unknown), count=2)
    reasons = {r.value: r.headers["dead-letter-reason"].decode() for r in letters}
    assert "not a message envelope" in reasons[garbage]
    assert "unknown message type 'OpenVault'" in reasons[unknown]
    assert all(r.headers["source-topic"] == topics.account_commands.encode() for r in letters)


async def test_an_outcome_goes_to_the_topic_its_command_names_and_nowhere_else(
    accounts_settings: AccountsSettings,
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
    step_outcomes: TopicTap,
    dead_letters: TopicTap,
) -> None:
    account = new_id("fay")
    opening = envelope_for(
        OpenAccount(account_id=account, owner="Fay", initial_balance="10", owned_by=TELLER)
    )
    deposit = envelope_for(DepositMoney(account_id=account, amount="5")).model_copy(
        update={"reply_to": topics.step_outcomes}
    )
    await send(producer, topics.account_commands, account, opening)
    await send(producer, topics.account_commands, account, deposit)

    [first] = await step_outcomes.wait_for(caused_by(deposit.message_id))
    await barrier(producer, topics, outcomes, account)
    assert outcomes.matching(caused_by(opening.message_id))
    assert not outcomes.matching(caused_by(deposit.message_id))

    # The same command again, naming no topic: its first outcome again, on the default topic.
    again = deposit.model_copy(update={"reply_to": None})
    await send(producer, topics.account_commands, account, again)
    [repeated] = await outcomes.wait_for(caused_by(deposit.message_id))
    assert repeated.value == first.value

    # A topic that is not an outcome topic: dead-lettered, saying what to send instead.
    astray = envelope_for(DepositMoney(account_id=account, amount="7")).model_copy(
        update={"reply_to": topics.account_events}
    )
    await send(producer, topics.account_commands, account, astray)
    [letter] = await dead_letters.wait_for(lambda r: r.value == to_bytes(astray))
    reason = letter.headers["dead-letter-reason"].decode()
    assert "is not an outcome topic" in reason
    assert topics.step_outcomes in reason
    await barrier(producer, topics, outcomes, account)
    assert await stored_stream(accounts_settings, account) == [
        (1, "AccountOpened"),
        (2, "MoneyDeposited"),
        (3, "MoneyDeposited"),  # the two barriers'
        (4, "MoneyDeposited"),
    ]


async def test_records_with_undecodable_headers_are_processed_not_skipped(
    topics: TopicSettings, producer: AIOKafkaProducer, outcomes: TopicTap
) -> None:
    """FastStream decodes headers as UTF-8 before the handler runs; a bad one must not make
    the batch vanish (it would be skipped by the next batch's offset commit)."""
    account = new_id("ivan")
    odd = envelope_for(OpenAccount(account_id=account, owner="Ivan", owned_by=TELLER))
    plain = envelope_for(DepositMoney(account_id=account, amount="3.00"))
    await producer.send_and_wait(
        topics.account_commands,
        value=to_bytes(odd),
        key=account.encode(),
        headers=[("trace", b"\xff\x01"), ("empty", None)],
    )
    await send(producer, topics.account_commands, account, plain)

    [opened_answer] = await outcomes.wait_for(caused_by(odd.message_id))
    [deposited_answer] = await outcomes.wait_for(caused_by(plain.message_id))
    assert isinstance(opened_answer.message, CommandOutcome)
    assert isinstance(deposited_answer.message, CommandOutcome)
    assert opened_answer.message.status == "accepted"
    assert deposited_answer.message.balance == Decimal("3.00")


async def test_a_command_the_contract_refuses_is_dead_lettered_and_answered_rejected(
    topics: TopicSettings,
    producer: AIOKafkaProducer,
    outcomes: TopicTap,
    dead_letters: TopicTap,
) -> None:
    """A NUL in an owner, sent straight to Kafka past the command API's checks: the accounts
    service cannot store it, and its sender gets a rejection instead of silence."""
    account = new_id("nul")
    envelope = envelope_for(OpenAccount(account_id=account, owner="ab", owned_by=TELLER))
    raw = to_bytes(envelope).replace(b'"owner":"ab"', b'"owner":"a\\u0000b"')
    assert raw != to_bytes(envelope)
    await send(producer, topics.account_commands, account, raw)

    [answer] = (await outcomes.wait_for(caused_by(envelope.message_id)))[:1]
    [letter] = await dead_letters.wait_for(lambda r: r.value == raw)
    assert isinstance(answer.message, CommandOutcome)
    assert (answer.message.status, answer.message.code) == ("rejected", "unprocessable_command")
    assert (answer.message.stream_id, answer.message.command_type) == (account, "OpenAccount")
    assert "U+0000" in (answer.message.reason or "")
    assert "U+0000" in letter.headers["dead-letter-reason"].decode()
