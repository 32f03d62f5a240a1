"""Addresses, ports and credentials of the infrastructure, from BANK_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

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


class AuthSettings(BaseSettings):
    """Where the login material lives (`make run` writes it: bank_deploy/credentials.py), and
    what every token says about who issued it, for whom, and for how long."""

    model_config = SettingsConfigDict(env_prefix="BANK_AUTH_", extra="ignore")

    dir: Path = Path(".bank/auth")
    issuer: str = "bank-command-api"
    audience: str = "bank"
    token_minutes: float = Field(default=15.0, gt=0)

    @property
    def signing_key_file(self) -> Path:
        """The private key: only the command API reads it."""
        return self.dir / "token-signing-key.pem"

    @property
    def verifying_key_file(self) -> Path:
        return self.dir / "token-verifying-key.pem"

    @property
    def users_file(self) -> Path:
        """Usernames, roles and Argon2 hashes: only the command API reads it."""
        return self.dir / "users.json"

    @property
    def logins_file(self) -> Path:
        """The demo users' passwords in clear, for `make demo` and for people: mode 0600."""
        return self.dir / "demo-logins.json"


class ServiceSettings(BaseSettings):
    """What every Kafka-connected service reads: the shared BANK_KAFKA_*, BANK_PG_* and
    BANK_TOPIC_* variables, and under its own BANK_<SERVICE>_ prefix (the subclass's), where it
    listens and how many connections it keeps."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    pg: PostgresSettings = Field(default_factory=PostgresSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # Connections and requests served at once; past it uvicorn answers 503 at once instead
    # of queueing work it cannot do in time (OWASP API4).
    http_limit_concurrency: int = Field(default=1000, ge=1)
    pool_size: int = Field(default=10, ge=1)


@dataclass(frozen=True)
class RelaySettings:
    """The outbox relay's (eventstore/relay.py)."""

    # Names the lease in its database (one outbox per database: one lease).
    lease_key: int
    # A leader that has not renewed its lease for this long loses it (eventstore/lease.py).
    lease_duration: float = 5.0
    # A standby asks for the lease, and a leader reads the outbox even unwoken, this often.
    poll_interval: float = 1.0
    # Rows read or sent in one round at most.
    batch_size: int = 500
    # Seconds a woken relay waits for more rows before it sends (0: never)...
    linger: float = 0.010
    # ... once it sends at least this many rows a second (0: always).
    linger_min_rate: float = 200.0
    # Published rows are deleted after this long, checked this often.
    retention: timedelta = timedelta(days=1)
    purge_every: float = 60.0


class OutboxSettings(ServiceSettings):
    """A service with an outbox: its relay's settings (BANK_<SERVICE>_RELAY_*)."""

    relay_lease_key: int = 7_345_100_000
    relay_lease_duration: float = Field(default=5.0, gt=0)
    relay_poll_interval: float = Field(default=1.0, gt=0)
    relay_linger: float = Field(default=0.010, ge=0)
    relay_linger_min_rate: float = Field(default=200.0, ge=0)

    @property
    def relay(self) -> RelaySettings:
        return RelaySettings(
            lease_key=self.relay_lease_key,
            lease_duration=self.relay_lease_duration,
            poll_interval=self.relay_poll_interval,
            linger=self.relay_linger,
            linger_min_rate=self.relay_linger_min_rate,
        )


class EventStoreSettings(OutboxSettings):
    """A service with an event store: also how many streams it keeps in memory (0: none, every
    batch reads its streams) and how many conflicts a batch may meet before it fails
    (eventstore/unit_of_work.py)."""

    known_streams: int = Field(default=10_000, ge=0)
    max_conflict_retries: int = Field(default=10, ge=1)
    # The snapshot policy of the service's aggregate: one every this many events of a stream
    # (0: none, every load folds the whole stream). eventstore/snapshots.py.
    snapshot_every: int = Field(default=100, ge=0)

    def with_old_name(self, value: int | None) -> Self:
        """`known_streams` as set under the name it had before, unless it is set itself: a
        deployment that keeps none (for a database that can fail over) must not lose that."""
        if value is not None and "known_streams" not in self.model_fields_set:
            self.known_streams = value
        return self
