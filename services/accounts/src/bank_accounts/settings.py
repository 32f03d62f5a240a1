"""The accounts service's settings, from BANK_ACCOUNTS_* (and the shared BANK_* variables)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bank_shared.settings import ServiceSettings


class AccountsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_ACCOUNTS_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8011
    consumer_group: str = "accounts"
    # A conflicting append is retried from a fresh load this many times before the batch fails
    # (and is redelivered): conflicts only happen while two instances share a partition briefly.
    max_conflict_retries: int = 10
    # How many accounts' last state the handler keeps, to decide a batch of known accounts
    # without reading them (eventstore/known.py); 0: none, every batch reads.
    known_accounts: int = Field(default=10_000, ge=0)
    pool_size: int = 10
    relay_lease_key: int = 7_345_100_001
    # A relay leader that has not renewed its lease for this long is replaced (seconds).
    relay_lease_duration: float = 5.0
    relay_poll_interval: float = 1.0
    # Seconds a woken relay waits for more rows before it sends (eventstore/relay.py); 0: none.
    relay_linger: float = 0.010
    # ... once it sends at least this many rows a second (0: always): about 50 transfers a
    # second here, at 4 rows a transfer (two events, two outcomes).
    relay_linger_min_rate: float = 200.0

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.accounts_db)
