"""The command API's settings, from BANK_COMMAND_API_* (and the shared BANK_* variables)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from bank_shared.http.rate_limits import rules
from bank_shared.money import DEFAULT_MAX_AMOUNT
from bank_shared.settings import AuthSettings, OutboxSettings


class CommandApiSettings(OutboxSettings):
    model_config = SettingsConfigDict(env_prefix="BANK_COMMAND_API_", extra="ignore")

    http_port: int = 8001
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # How long a POST waits for the write side's decision before answering 202 pending.
    decision_timeout: float = 10.0
    # How many POSTs may wait for their decisions at once; past that, a POST is answered 202
    # pending at once (its command is sent all the same), so that an overloaded bank does not
    # pile up waiting connections whose handling takes the CPU the write side needs. 0: none
    # waits.
    max_waiting: int = Field(default=500, ge=0)
    max_amount: Decimal = DEFAULT_MAX_AMOUNT
    max_body_bytes: int = 16_384
    # Where clients read a transfer's progress (the Location of an accepted transfer).
    query_api_url: str = "http://127.0.0.1:8002"
    # Comma-separated origins a browser may send commands from: the web UI is served by the
    # query API, so its origin is allowed by default.
    cors_origins: str = "http://127.0.0.1:8002,http://localhost:8002"
    # Host headers this API answers (TrustedHostMiddleware, against DNS rebinding): the names
    # clients reach it by, comma-separated.
    allowed_hosts: str = "127.0.0.1,localhost"
    # Rate limits (`limits` notation, ";" between rules, empty: none): POSTs of commands per
    # subject and per client address, logins per username and per client address.
    rate_limit_writes: str = "20/second;600/minute"
    rate_limit_writes_per_address: str = "100/second"
    rate_limit_logins: str = "10/minute"
    rate_limit_logins_per_address: str = "30/minute"
    consumer_group: str = "command-api"
    relay_lease_key: int = 7_345_100_003
    # About 50 transfers a second here, at 1 row a transfer or deposit (its command).
    relay_linger_min_rate: float = 50.0

    @property
    def dsn(self) -> str:
        return self.pg.dsn(self.pg.commands_db)

    @property
    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @field_validator(
        "rate_limit_writes",
        "rate_limit_writes_per_address",
        "rate_limit_logins",
        "rate_limit_logins_per_address",
    )
    @classmethod
    def _readable_limits(cls, text: str) -> str:
        rules(text)  # refused at start, not at the first request
        return text

    @property
    def trusted_hosts(self) -> list[str]:
        return [host.strip() for host in self.allowed_hosts.split(",") if host.strip()]
