"""Where messages that can never be processed go: the dead-letter topic, with the reason and
where they came from. A command among them also gets its one answer, `rejected`, so that
whoever sent it (a waiting POST, a saga step) learns of it instead of waiting for ever; the
answer is recorded like any other (processed, with its outbox row), so the command never gets
another one, even from a later, fixed version of the service."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, TypeAlias

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from bank_shared.contracts.envelope import Envelope
from bank_shared.contracts.outcomes import (
    UNPROCESSABLE,
    CommandOutcome,
    Rejection,
    answer_to,
    rejected,
)
from bank_shared.eventstore.store import Changes, ConcurrencyError, OutboxMessage
from bank_shared.topics import TopicSettings, UnknownReplyTopicError

if TYPE_CHECKING:
    from bank_shared.eventstore.unit_of_work import Storage

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[Any, Any]"


class DeadLetters:
    """The dead-letter topic. With `answers` (the event store of a service that decides
    commands), a dead-lettered command is answered `rejected`, code `unprocessable_command`,
    on the topic its sender named."""

    def __init__(
        self,
        broker: KafkaBroker,
        topic: str,
        *,
        answers: Storage | None = None,
        topics: TopicSettings | None = None,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.answers = answers
        self.topics = topics or TopicSettings()

    async def send(self, record: Record, reason: str) -> None:
        """Dead-letter a consumed record (and answer it, if it is a command)."""
        source = {
            "source-topic": record.topic,
            "source-partition": str(record.partition),
            "source-offset": str(record.offset),
        }
        await self.publish(record.key, record.value, reason, source)
        if self.answers is None:
            return
        answer = unprocessable_answer(record.value, reason, self.topics)
        if answer is None:
            return
        command_id = answer.envelope.causation_id
        assert command_id is not None  # an answer is caused by its command
        with contextlib.suppress(ConcurrencyError):  # answered before: that answer stands
            await self.answers.write(Changes(outbox=[answer], processed=[(command_id, answer)]))

    async def publish(
        self, key: bytes | None, value: bytes | None, reason: str, source: dict[str, str]
    ) -> None:
        """Dead-letter any bytes, with the reason and where they came from."""
        log.warning("dead-lettering %s: %s", source, reason)
        headers = {"dead-letter-reason": reason[:2000], **source}
        await self.broker.publish(value or b"", self.topic, key=key, headers=headers)


def unprocessable_answer(
    raw: bytes | None, reason: str, topics: TopicSettings
) -> OutboxMessage | None:
    """The rejected outcome of a command that cannot be processed, or None if the bytes are no
    command one could answer. Its id is derived from the command's, like every outcome's."""
    try:
        envelope = Envelope.model_validate_json(raw or b"")
        reply_topic = topics.outcome_topic(envelope.reply_to)
    except (ValidationError, UnknownReplyTopicError):
        return None
    if envelope.stream_version is not None or envelope.type == CommandOutcome.message_type():
        return None  # an event or an outcome: no one waits for an answer to it
    named = [envelope.payload.get(field) for field in ("account_id", "transfer_id")]
    stream_id = next((n for n in named if isinstance(n, str)), envelope.stream_id or "")
    reason = f"the command could not be processed: {reason}"[:1000]
    outcome = rejected(envelope, stream_id, Rejection(UNPROCESSABLE, reason))
    sealed = answer_to(envelope, outcome, envelope.occurred_at)
    return OutboxMessage(reply_topic, stream_id, sealed)
