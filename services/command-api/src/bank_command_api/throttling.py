"""How often a caller may send commands or try to log in: per subject and per client address."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from limits import RateLimitItem

from bank_command_api.settings import CommandApiSettings
from bank_shared.contracts.actors import Actor
from bank_shared.http.rate_limits import RateLimits, rules


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass
class Throttle:
    writes: list[RateLimitItem]
    writes_per_address: list[RateLimitItem]
    logins: list[RateLimitItem]
    logins_per_address: list[RateLimitItem]
    counters: RateLimits = field(default_factory=RateLimits)

    @classmethod
    def from_settings(cls, settings: CommandApiSettings) -> Throttle:
        return cls(
            writes=rules(settings.rate_limit_writes),
            writes_per_address=rules(settings.rate_limit_writes_per_address),
            logins=rules(settings.rate_limit_logins),
            logins_per_address=rules(settings.rate_limit_logins_per_address),
        )

    def command(self, request: Request, actor: Actor) -> None:
        """Count a command POST; 429 past a limit."""
        self.counters.check(
            self.writes_per_address, "commands from one address", client_address(request)
        )
        self.counters.check(self.writes, "commands of one user", actor.subject)

    def login(self, request: Request, username: str) -> None:
        """Count a login attempt before the password is checked: guessing is slow for one
        name from many addresses, and for many names from one address."""
        self.counters.check(
            self.logins_per_address, "logins from one address", client_address(request)
        )
        self.counters.check(self.logins, "logins as one user", username)
