"""Logging in to the command API and being refused without a good token: `POST /token` with the
demo users' passwords, and a 401 problem with `WWW-Authenticate: Bearer` on every other route for
a missing, expired, forged or unsigned token."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi import FastAPI

from bank_command_api.settings import CommandApiSettings
from bank_deploy.credentials import DEMO_USERS, demo_passwords
from bank_deploy.providers import Endpoints
from bank_shared.auth.material import token_verifier
from bank_shared.auth.tokens import TokenIssuer
from bank_shared.clock import utc_now
from bank_shared.contracts.actors import Actor
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from tests.command_api_client import serving_app, settings_for
from tests.logins import AUTH
from tests.support import new_id

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
# The routes anyone may call: the login itself, and what orchestrators probe.
OPEN_ROUTES = {("POST", "/token"), ("GET", "/health"), ("GET", "/ready")}
# Stands for the demo user Alice's password, read when the test runs.
ALICES_PASSWORD = "<alice's password>"


@pytest.fixture(scope="module")
def api_settings(infra: Endpoints, topics: TopicSettings) -> CommandApiSettings:
    return settings_for(infra, topics)


@pytest.fixture(scope="module")
async def served(
    api_settings: CommandApiSettings, accounts: Platform
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with serving_app(api_settings) as (client, app):
        # Sends no token unless a test gives one.
        client.headers.pop("Authorization")
        yield client, app


@pytest.fixture(scope="module")
def api(served: tuple[httpx.AsyncClient, FastAPI]) -> httpx.AsyncClient:
    return served[0]


def assert_unauthenticated(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.json()
    assert body["code"]
    assert body["message"].strip()


async def log_in(api: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await api.post("/token", data={"username": username, "password": password})


# --- POST /token -------------------------------------------------------------------------------


@pytest.mark.parametrize("username", list(DEMO_USERS))
async def test_a_demo_user_logs_in_with_their_password_and_the_token_is_theirs(
    api: httpx.AsyncClient, username: str
) -> None:
    answer = await log_in(api, username, demo_passwords(AUTH)[username])

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == AUTH.token_minutes * 60
    actor = token_verifier(AUTH).verify(body["access_token"])
    assert actor == Actor(subject=username, role=DEMO_USERS[username])


async def test_a_token_from_the_login_works_on_the_api(api: httpx.AsyncClient) -> None:
    answer = await log_in(api, "teller", demo_passwords(AUTH)["teller"])
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    opened = await api.post(
        "/accounts",
        json={"owner": "Login Test", "initial_balance": "5.00", "owned_by": "alice"},
        headers=headers,
    )

    assert opened.status_code == 201, opened.text
    seen = await api.get(f"/commands/{opened.json()['command_id']}", headers=headers)
    assert seen.status_code == 200, seen.text
    assert seen.json()["status"] == "accepted"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "not her password"),
        ("bob", ALICES_PASSWORD),
        ("nobody-at-all", ALICES_PASSWORD),  # an unknown user, with a real password
    ],
    ids=["wrong password", "another users password", "unknown user"],
)
async def test_a_wrong_login_is_401_with_a_bearer_challenge(
    api: httpx.AsyncClient, username: str, password: str
) -> None:
    if password == ALICES_PASSWORD:
        password = demo_passwords(AUTH)["alice"]
    answer = await log_in(api, username, password)

    assert_unauthenticated(answer)
    assert "access_token" not in answer.json()


async def test_a_wrong_login_does_not_tell_which_names_exist(api: httpx.AsyncClient) -> None:
    wrong_password = await log_in(api, "bob", "not his password")
    unknown_user = await log_in(api, new_id("nobody"), "not his password")

    assert_unauthenticated(wrong_password)
    assert wrong_password.json() == unknown_user.json()


# --- every other route needs a good token ----------------------------------------------------


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of the app's OpenAPI document: a new route is checked with no
    entry to add here."""
    return sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    )


def concrete(path: str) -> str:
    """The path with its parameters filled in: an id that exists nowhere, which must not
    matter, since the token is checked first."""
    return path.replace("{account_id}", new_id("acc")).replace("{command_id}", str(uuid.uuid4()))


def forged_tokens() -> dict[str, str | None]:
    """Tokens that must not get in, by name (None: no Authorization header at all)."""
    now = utc_now()
    teller = Actor(subject="teller", role="teller")
    ours = TokenIssuer(
        AUTH.signing_key_file.read_bytes(),
        issuer=AUTH.issuer,
        audience=AUTH.audience,
        lifetime=timedelta(minutes=AUTH.token_minutes),
    )
    other_key = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    forger = TokenIssuer(
        other_key, issuer=AUTH.issuer, audience=AUTH.audience, lifetime=timedelta(minutes=5)
    )
    claims: dict[str, Any] = {
        "sub": "teller",
        "role": "teller",
        "iss": AUTH.issuer,
        "aud": AUTH.audience,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    return {
        "missing": None,
        "expired": ours.issue(teller, now - timedelta(minutes=AUTH.token_minutes + 1)),
        "forged": forger.issue(teller, now),
        "alg none": jwt.encode(claims, "", algorithm="none"),
        "garbage": "not-a-token",
    }


FORGED = forged_tokens()


def authorization(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("kind", list(FORGED))
async def test_every_route_but_the_open_ones_refuses_a_bad_token_with_401(
    served: tuple[httpx.AsyncClient, FastAPI], kind: str
) -> None:
    api, app = served
    answered: dict[tuple[str, str], int] = {}
    for method, path in routes(app):
        # An empty body: authentication comes first, whatever the request holds.
        body: dict[str, Any] | None = (
            {} if method == "POST" and (method, path) not in OPEN_ROUTES else None
        )
        answer = await api.request(
            method, concrete(path), json=body, headers=authorization(FORGED[kind])
        )
        answered[method, path] = answer.status_code
        if (method, path) not in OPEN_ROUTES:
            assert_unauthenticated(answer)

    assert answered.keys() >= OPEN_ROUTES
    assert {route for route, status in answered.items() if status != 401} == OPEN_ROUTES


async def test_the_open_routes_answer_without_a_token(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health")).status_code == 200
    assert (await api.get("/ready")).status_code == 200


def test_the_openapi_document_says_which_routes_need_a_token(
    served: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    """What a client generated from the document sends: a bearer token wherever it is needed."""
    _, app = served
    document = app.openapi()
    secured = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    }

    assert secured == set(routes(app)) - OPEN_ROUTES
    schemes = document["components"]["securitySchemes"]
    assert [scheme["type"] for scheme in schemes.values()] == ["oauth2"]
    [scheme] = schemes.values()
    assert scheme["flows"]["password"]["tokenUrl"] == "token"
