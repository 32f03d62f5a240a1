"""Kafka topic names and shapes. Keys are aggregate ids, so one stream's messages stay in order."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic_settings import BaseSettings, SettingsConfigDict


class TopicSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_TOPIC_", extra="ignore")

    account_commands: str = "bank.account-commands"
    account_events: str = "bank.account-events"
    command_outcomes: str = "bank.command-outcomes"
    # The outcomes of the account commands the transfers saga sends (its steps), apart from
    # the rest: the command API does not read the saga's answers, nor the saga the API's.
    step_outcomes: str = "bank.transfer-step-outcomes"
    dead_letters: str = "bank.dead-letters"
    transfer_commands: str = "bank.transfer-commands"
    transfer_events: str = "bank.transfer-events"
    partitions: int = 6

    def prefixed(self, prefix: str) -> TopicSettings:
        """The same topics under `<prefix>.`: an isolated set for a test or a benchmark."""
        names = {name: f"{prefix}.{value}" for name, value in self if isinstance(value, str)}
        return self.model_copy(update=names)

    def outcome_topic(self, reply_to: str | None) -> str:
        """Where the outcome of a command goes: the topic its sender named, or the command
        API's outcomes topic. A name that is not one of the bank's outcome topics is refused:
        an outcome sent to, say, an events topic would stop the consumers of that topic."""
        if reply_to is None:
            return self.command_outcomes
        if reply_to in (self.command_outcomes, self.step_outcomes):
            return reply_to
        raise UnknownReplyTopicError(
            f"reply_to {reply_to!r} is not an outcome topic of this bank; send the command"
            f" with reply_to {self.command_outcomes!r}, {self.step_outcomes!r} or none"
        )


class UnknownReplyTopicError(ValueError):
    """A command asks for its outcome on a topic that is not an outcome topic: applying it
    again can only fail again, so it is dead-lettered."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


# Events are the history the read side can be rebuilt from: they are kept forever.
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


def account_topics(settings: TopicSettings) -> list[TopicSpec]:
    return [
        TopicSpec(settings.account_commands, settings.partitions),
        TopicSpec(settings.account_events, settings.partitions, KEEP_FOREVER),
        TopicSpec(settings.command_outcomes, settings.partitions),
        TopicSpec(settings.step_outcomes, settings.partitions),
        TopicSpec(settings.dead_letters, 1, KEEP_FOREVER),
    ]


def transfer_topics(settings: TopicSettings) -> list[TopicSpec]:
    """What the transfers saga reads and writes: its own topics and the accounts' ones."""
    return [
        TopicSpec(settings.transfer_commands, settings.partitions),
        TopicSpec(settings.transfer_events, settings.partitions, KEEP_FOREVER),
        *account_topics(settings),
    ]
