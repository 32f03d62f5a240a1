"""The bearer token on a request: verified with the public key, or a 401 that says what to do."""

# No `from __future__ import annotations` here: FastAPI reads the annotation of the closure
# in `actor_of`, and a string annotation could not name the closure's `bearer`.
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from bank_shared.auth.tokens import InvalidTokenError, TokenVerifier
from bank_shared.contracts.actors import Actor
from bank_shared.http.problems import ProblemError


class BearerToken(OAuth2PasswordBearer):
    """`Authorization: Bearer <token>`, documented in OpenAPI as the password flow of the
    command API's `POST /token`. Missing is a problem+json 401, not FastAPI's plain one."""

    def __init__(self, token_url: str) -> None:
        super().__init__(tokenUrl=token_url, auto_error=False)


def unauthenticated(message: str, error: str | None = None) -> ProblemError:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return ProblemError(401, "not_authenticated", message, headers={"WWW-Authenticate": challenge})


def authenticated(request: Request, token: str | None) -> Actor:
    """The actor of a verified token; the app keeps its verifier in `state.tokens`."""
    if not token:
        raise unauthenticated(
            "This needs a bearer token: log in with POST /token on the command API (username"
            " and password, form-encoded) and send `Authorization: Bearer <access_token>`."
        )
    verifier: TokenVerifier = request.app.state.tokens
    try:
        return verifier.verify(token)
    except InvalidTokenError as error:
        raise unauthenticated(f"Bearer token refused: {error}.", "invalid_token") from None


def actor_of(bearer: BearerToken) -> Callable[..., Awaitable[Actor]]:
    """A dependency for routes, `Annotated[Actor, Depends(actor_of(BEARER))]`: the caller,
    authenticated, also left in `request.state.actor` for the rate limits."""

    async def current_actor(
        request: Request, token: Annotated[str | None, Depends(bearer)]
    ) -> Actor:
        actor = authenticated(request, token)
        request.state.actor = actor
        return actor

    return current_actor
