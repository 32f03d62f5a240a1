"""Addresses, ports and credentials of the infrastructure, from BANK_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bank_shared.topics import TopicSettings


class KafkaSettings(BaseSettings):
    """Where the Kafka broker listens. `bootstrap_servers` wins when it is set."""

    model_config = SettingsConfigDict(env_prefix="BANK_KAFKA_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 9092
    bootstrap_servers: str = ""

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.host}:{self.port}"


class PostgresSettings(BaseSettings):
    """One PostgreSQL server that holds the three databases of the bank."""

    model_config = SettingsConfigDict(env_prefix="BANK_PG_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 5433
    user: str = "bank"
    password: str = Field(default="bank", repr=False)
    accounts_db: str = "bank_accounts"
    transfers_db: str = "bank_transfers"
    read_db: str = "bank_read"
    # The command API's own: outcomes of the commands it sent and idempotency keys.
    commands_db: str = "bank_commands"

    @property
    def databases(self) -> tuple[str, ...]:
        return (self.accounts_db, self.transfers_db, self.read_db, self.commands_db)

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


class ServiceSettings(BaseSettings):
    """What every Kafka-connected service reads besides its own settings (subclasses add
    those under their own BANK_<SERVICE>_ prefix)."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    pg: PostgresSettings = Field(default_factory=PostgresSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
