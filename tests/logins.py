"""Logins for tests: the session's login material, made as `make run` makes it, and tokens.

Tokens are signed here with the session's key, for any subject: a test can act as a customer
of its own (a random name), whose accounts no other test sees."""

from __future__ import annotations

import os

from bank_deploy.credentials import DEMO_USERS, ensure_credentials
from bank_deploy.providers import launcher_config_for_tests
from bank_shared.auth.material import token_issuer
from bank_shared.clock import utc_now
from bank_shared.contracts.actors import TELLER, Actor, Role
from bank_shared.settings import AuthSettings

AUTH = AuthSettings(dir=launcher_config_for_tests().state_dir / "auth")


def use_session_logins() -> None:
    """Make the login material (once) and point every service of the session at it, the
    processes started with this environment too."""
    ensure_credentials(AUTH)
    os.environ["BANK_AUTH_DIR"] = str(AUTH.dir)


def token(subject: str = TELLER, role: Role | None = None) -> str:
    role = role or DEMO_USERS.get(subject, "customer")
    return token_issuer(AUTH).issue(Actor(subject=subject, role=role), utc_now())


def bearer(subject: str = TELLER, role: Role | None = None) -> dict[str, str]:
    """The Authorization header of a request sent as `subject`."""
    return {"Authorization": f"Bearer {token(subject, role)}"}
