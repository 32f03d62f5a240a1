"""The query API's settings, from BANK_QUERY_API_* (and the shared BANK_PG_* and BANK_AUTH_*
variables)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bank_shared.settings import AuthSettings, PostgresSettings


class QueryApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_QUERY_API_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8002
    # Connections and requests served at once (uvicorn answers 503 past it): above the caps
    # below, so that they, with their clearer answers, are reached first.
    http_limit_concurrency: int = Field(default=1000, ge=1)
    # Host headers this API answers (TrustedHostMiddleware, against DNS rebinding).
    allowed_hosts: str = "127.0.0.1,localhost"
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
    # Caps per process (OWASP API4): each open change stream and each `min_version` wait holds
    # the server while it lasts; past the cap the next one is a 503 with Retry-After.
    max_change_streams: int = Field(default=100, ge=1)
    max_version_waiters: int = Field(default=200, ge=1)

    pg: PostgresSettings = Field(default_factory=PostgresSettings)
    # Only the public key is read here: this API checks tokens, the command API issues them.
    auth: AuthSettings = Field(default_factory=AuthSettings)

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
    def token_url(self) -> str:
        """Where a client logs in for a token: the command API's `POST /token`."""
        return f"{self.command_api_url.rstrip('/')}/token"

    @property
    def trusted_hosts(self) -> list[str]:
        return [host.strip() for host in self.allowed_hosts.split(",") if host.strip()]

    @property
    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
