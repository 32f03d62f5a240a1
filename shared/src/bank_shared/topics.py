"""Kafka topic names and shapes. Keys are aggregate ids, so one stream's messages stay in order."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic_settings import BaseSettings, SettingsConfigDict


class TopicSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_TOPIC_", extra="ignore")

    account_commands: str = "bank.account-commands"
    account_events: str = "bank.account-events"
    command_outcomes: str = "bank.command-outcomes"
    dead_letters: str = "bank.dead-letters"
    transfer_commands: str = "bank.transfer-commands"
    transfer_events: str = "bank.transfer-events"
    partitions: int = 6

    def prefixed(self, prefix: str) -> TopicSettings:
        """The same topics under `<prefix>.`: an isolated set for a test or a benchmark."""
        names = {name: f"{prefix}.{value}" for name, value in self if isinstance(value, str)}
        return self.model_copy(update=names)


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
        TopicSpec(settings.dead_letters, 1, KEEP_FOREVER),
    ]


def transfer_topics(settings: TopicSettings) -> list[TopicSpec]:
    """What the transfers saga reads and writes: its own topics and the accounts' ones."""
    return [
        TopicSpec(settings.transfer_commands, settings.partitions),
        TopicSpec(settings.transfer_events, settings.partitions, KEEP_FOREVER),
        *account_topics(settings),
    ]
