"""The accounts service's settings, from BANK_ACCOUNTS_* (and the shared BANK_* variables)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from bank_shared.settings import EventStoreSettings


class AccountsSettings(EventStoreSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_ACCOUNTS_", extra="ignore")

    http_port: int = 8011
    consumer_group: str = "accounts"
    relay_lease_key: int = 7_345_100_001
    # About 50 transfers a second here, at 4 rows a transfer (two events, two answers).
    relay_linger_min_rate: float = 200.0

    # The name of `known_streams` before; still read.
    known_accounts: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _old_names(self) -> Self:
        return self.with_old_name(self.known_accounts)

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.accounts_db)
