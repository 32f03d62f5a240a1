"""The transfers saga's settings, from BANK_SAGA_* (and the shared BANK_* variables)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from bank_shared.settings import EventStoreSettings


class SagaSettings(EventStoreSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_SAGA_", extra="ignore")

    http_port: int = 8012
    commands_group: str = "transfers-saga.commands"
    answers_group: str = "transfers-saga.answers"
    # A step with no answer after this long is sent again (same command id), then after twice
    # as long, and so on up to `max_step_backoff`; overdue steps are looked for this often.
    step_timeout: float = Field(default=10.0, gt=0)
    max_step_backoff: float = Field(default=300.0, gt=0)
    resend_check_interval: float = Field(default=1.0, gt=0)
    relay_lease_key: int = 7_345_100_002
    # About 50 transfers a second here, at 6 rows a transfer (three events, two steps, an answer).
    relay_linger_min_rate: float = 300.0

    # The name of `known_streams` before; still read.
    known_transfers: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _old_names(self) -> Self:
        return self.with_old_name(self.known_transfers)

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.transfers_db)
