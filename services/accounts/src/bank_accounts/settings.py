"""The accounts service's settings, from BANK_ACCOUNTS_* (and the shared BANK_* variables)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bank_shared.settings import EventStoreSettings


class AccountsSettings(EventStoreSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_ACCOUNTS_", extra="ignore")

    http_port: int = 8011
    consumer_group: str = "accounts"
    relay_lease_key: int = 7_345_100_001
    # About 50 transfers a second here, at 4 rows a transfer (two events, two answers).
    relay_linger_min_rate: float = 200.0

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.accounts_db)
