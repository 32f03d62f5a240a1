"""The query API's settings, from BANK_QUERY_API_* (and the shared BANK_PG_* variables)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bank_shared.settings import PostgresSettings


class QueryApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_QUERY_API_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8002
    pool_size: int = Field(default=10, ge=1)
    # The bound of a `min_version` wait: past it the answer is 503 not_yet_projected.
    min_version_wait: float = Field(default=5.0, gt=0)
    # A waiting request re-reads this often even without a notification, so a lost LISTEN
    # connection (or a NOTIFY sent while it reconnected) only costs latency, never the wait.
    min_version_recheck: float = Field(default=0.1, gt=0)
    default_limit: int = Field(default=50, ge=1)
    max_limit: int = Field(default=500, ge=1)
    # Comma-separated origins a browser may call this API from (a web UI); empty: none.
    cors_origins: str = ""
    # Where the web UI's pages send commands: the command API as the *browser* reaches it
    # (its CORS must allow this API's origin, BANK_COMMAND_API_CORS_ORIGINS).
    command_api_url: str = "http://127.0.0.1:8001"
    # An open change stream (GET /changes) sends a comment this often, so proxies and browsers
    # keep it open and a vanished client is noticed.
    stream_heartbeat: float = Field(default=15.0, gt=0)

    pg: PostgresSettings = Field(default_factory=PostgresSettings)

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.default_limit > self.max_limit:
            raise ValueError(
                f"default_limit ({self.default_limit}) is above max_limit ({self.max_limit})"
            )
        return self

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.read_db)

    @property
    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
