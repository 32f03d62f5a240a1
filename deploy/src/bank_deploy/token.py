"""`bank-infra token USER`: log a demo user in through `POST /token` and print the token, for
`curl -H "Authorization: Bearer $(uv run bank-infra token alice)"`."""

from __future__ import annotations

import httpx

from bank_deploy.credentials import demo_passwords
from bank_deploy.processes import LauncherError
from bank_shared.settings import AuthSettings


def log_in(command_api: str, auth: AuthSettings, username: str) -> str:
    """A fresh access token for a demo user, or LauncherError saying what to do."""
    try:
        password = demo_passwords(auth)[username]
    except FileNotFoundError:
        raise LauncherError(
            f"no demo logins at {auth.logins_file}: start the bank first (make run)"
        ) from None
    except KeyError:
        raise LauncherError(
            f"{username!r} is not a demo user; try one of {', '.join(demo_passwords(auth))}"
        ) from None
    try:
        answer = httpx.post(
            f"{command_api}/token", data={"username": username, "password": password}, timeout=30
        )
    except httpx.TransportError as error:
        raise LauncherError(
            f"cannot reach the command API at {command_api} ({error}); start the bank first"
        ) from None
    if answer.status_code != 200:
        raise LauncherError(f"login refused: {answer.status_code} {answer.text}")
    token: str = answer.json()["access_token"]
    return token
