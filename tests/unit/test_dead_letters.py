"""The answer a dead-lettered command gets: rejected, on the topic its sender named, with an
id derived from the command's; events, outcomes and unreadable bytes get none."""

from __future__ import annotations

import uuid

from bank_shared.contracts.accounts import DepositMoney
from bank_shared.contracts.envelope import open_envelope, to_bytes
from bank_shared.contracts.outcomes import CommandOutcome
from bank_shared.ids import derived_id
from bank_shared.messaging.dead_letters import unprocessable_answer
from bank_shared.topics import TopicSettings
from tests.support import envelope_for, withdrawn

TOPICS = TopicSettings()


def test_a_command_is_answered_rejected_where_it_asked_with_a_derived_id() -> None:
    command = envelope_for(DepositMoney(account_id="alice", amount="1.00")).model_copy(
        update={"reply_to": TOPICS.step_outcomes}
    )
    answer = unprocessable_answer(to_bytes(command), "it broke", TOPICS)
    assert answer is not None
    envelope = answer.envelope
    assert (answer.topic, answer.key) == (TOPICS.step_outcomes, "alice")
    assert envelope.message_id == derived_id(command.message_id, "outcome")
    assert (envelope.causation_id, envelope.correlation_id) == (
        command.message_id,
        command.correlation_id,
    )
    _, outcome = open_envelope(to_bytes(envelope))
    assert isinstance(outcome, CommandOutcome)
    assert (outcome.status, outcome.code, outcome.command_id) == (
        "rejected",
        "unprocessable_command",
        command.message_id,
    )
    assert "it broke" in (outcome.reason or "")


def test_a_command_whose_payload_is_unreadable_is_still_answered() -> None:
    command = envelope_for(DepositMoney(account_id="bob", amount="1.00"))
    broken = to_bytes(command.model_copy(update={"payload": {"account_id": "bob"}}))
    answer = unprocessable_answer(broken, "invalid payload", TOPICS)
    assert answer is not None
    assert answer.topic == TOPICS.command_outcomes


def test_what_is_not_a_command_gets_no_answer() -> None:
    outcome_envelope, _ = withdrawn("t-1", "alice")
    event = envelope_for(DepositMoney(account_id="a", amount="1")).model_copy(
        update={"stream_id": "a", "stream_version": 3}
    )
    odd_reply = envelope_for(DepositMoney(account_id="a", amount="1")).model_copy(
        update={"reply_to": "bank.account-events"}
    )
    for raw in (
        b"not json",
        to_bytes(outcome_envelope),
        to_bytes(event),
        to_bytes(odd_reply),
        str(uuid.uuid4()).encode(),
    ):
        assert unprocessable_answer(raw, "why", TOPICS) is None
