"""The accounts service's settings, from BANK_ACCOUNTS_* (and the shared BANK_* variables)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bank_shared.settings import KafkaSettings, PostgresSettings
from bank_shared.topics import TopicSettings


class AccountsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_ACCOUNTS_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8011
    consumer_group: str = "accounts"
    # A conflicting append is retried from a fresh load this many times before the batch fails
    # (and is redelivered): conflicts only happen while two instances share a partition briefly.
    max_conflict_retries: int = 10
    pool_size: int = 10
    relay_lock_key: int = 7_345_100_001
    relay_poll_interval: float = 1.0

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    pg: PostgresSettings = Field(default_factory=PostgresSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.accounts_db)
