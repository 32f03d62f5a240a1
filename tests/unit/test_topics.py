"""Where a command's outcome goes: the return address it names, among the outcome topics."""

from __future__ import annotations

import pytest

from bank_shared.topics import TopicSettings, UnknownReplyTopicError


def bank_topics() -> TopicSettings:
    """The default names under a prefix, whatever BANK_TOPIC_* the shell sets."""
    return TopicSettings(
        command_outcomes="bank.command-outcomes", step_outcomes="bank.transfer-step-outcomes"
    ).prefixed("t1")


def test_a_command_naming_no_topic_is_answered_on_the_command_apis_topic() -> None:
    topics = bank_topics()
    assert topics.outcome_topic(None) == "t1.bank.command-outcomes"


def test_a_command_naming_an_outcome_topic_is_answered_there() -> None:
    topics = bank_topics()
    assert topics.outcome_topic(topics.step_outcomes) == "t1.bank.transfer-step-outcomes"
    assert topics.outcome_topic(topics.command_outcomes) == topics.command_outcomes


@pytest.mark.parametrize("name", ["t1.bank.transfer-events", "bank.transfer-step-outcomes", ""])
def test_any_other_topic_is_refused_with_the_ones_to_use(name: str) -> None:
    topics = bank_topics()
    with pytest.raises(UnknownReplyTopicError) as refused:
        topics.outcome_topic(name)
    assert "t1.bank.transfer-step-outcomes" in str(refused.value)
    assert "t1.bank.command-outcomes" in str(refused.value)
