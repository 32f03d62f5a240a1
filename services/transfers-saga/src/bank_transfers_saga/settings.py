"""The transfers saga's settings, from BANK_SAGA_* (and the shared BANK_* variables)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bank_shared.settings import ServiceSettings


class SagaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_SAGA_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8012
    commands_group: str = "transfers-saga.commands"
    answers_group: str = "transfers-saga.answers"
    # A step with no answer after this long is sent again (same command id), then after twice
    # as long, and so on up to `max_step_backoff`.
    step_timeout: float = 10.0
    max_step_backoff: float = 300.0
    resend_check_interval: float = 1.0
    max_conflict_retries: int = 10
    # How many transfers' last state the saga keeps, to decide a batch of known transfers
    # without reading them (eventstore/known.py); 0: none, every batch reads.
    known_transfers: int = Field(default=10_000, ge=0)
    pool_size: int = 10
    relay_lease_key: int = 7_345_100_002
    # A relay leader that has not renewed its lease for this long is replaced (seconds).
    relay_lease_duration: float = 5.0
    relay_poll_interval: float = 1.0
    # Seconds a woken relay waits for more rows before it sends (eventstore/relay.py); 0: none.
    relay_linger: float = 0.010
    # ... once it sends at least this many rows a second (0: always): about 50 transfers a
    # second here, at 6 rows a transfer (three events, two commands, an outcome).
    relay_linger_min_rate: float = 300.0

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.transfers_db)
