"""The projector's settings, from BANK_PROJECTOR_* (and the shared BANK_* variables)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bank_shared.settings import ServiceSettings


class ProjectorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_PROJECTOR_", extra="ignore")

    http_port: int = 8013
    accounts_group: str = "projector.accounts"
    transfers_group: str = "projector.transfers"
    max_records: int = 500
    pool_size: int = 5
    rebuild_batch: int = 5000

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.read_db)
