"""`POST /token`: the OAuth2 password flow. A username and password in, a signed token out."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from bank_command_api.schemas import AccessToken
from bank_command_api.throttling import Throttle
from bank_shared.auth.tokens import TokenIssuer
from bank_shared.auth.users import Users
from bank_shared.clock import utc_now
from bank_shared.http.bearer import unauthenticated

router = APIRouter()


@router.post(
    "/token",
    tags=["login"],
    summary="Log in: a bearer token for a username and password",
    responses={
        401: {"description": "Wrong username or password."},
        429: {"description": "Too many attempts; wait `Retry-After` seconds."},
    },
)
async def log_in(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> AccessToken:
    """Form-encoded `username` and `password` (`grant_type=password`). The token expires
    after `expires_in` seconds; then log in again."""
    throttle: Throttle = request.app.state.throttle
    throttle.login(request, form.username)
    users: Users = request.app.state.users
    # Argon2 is meant to take CPU time: off the event loop, so other requests go on.
    actor = await asyncio.to_thread(users.authenticate, form.username, form.password)
    if actor is None:
        raise unauthenticated(
            "Wrong username or password. Check both (make run printed where the demo logins"
            " are) and try again."
        )
    issuer: TokenIssuer = request.app.state.issuer
    token = issuer.issue(actor, utc_now())
    return AccessToken(access_token=token, expires_in=int(issuer.lifetime.total_seconds()))
