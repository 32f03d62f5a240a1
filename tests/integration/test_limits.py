"""The APIs' limits (OWASP API4): rate limits per subject, per client address and on logins
answer 429 with Retry-After and record nothing; a Host they do not serve is refused; past its
concurrency limit a process answers 503 at once."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest

from bank_command_api.settings import CommandApiSettings
from bank_deploy.credentials import demo_passwords
from bank_deploy.providers import Endpoints, free_port
from bank_shared.topics import TopicSettings
from tests.command_api_client import sent_so_far, serving, settings_for
from tests.integration.conftest import migrated_pool
from tests.logins import AUTH, bearer
from tests.query_api_client import serving as serving_queries
from tests.query_api_client import settings_for as query_settings_for
from tests.support import ServiceProcess, eventually, service_env

pytestmark = pytest.mark.integration

ASYNC = {"Prefer": "respond-async"}  # answered once recorded: no write side needed


def limited(infra: Endpoints, topics: TopicSettings, **limits: str) -> CommandApiSettings:
    none = {
        "rate_limit_writes": "",
        "rate_limit_writes_per_address": "",
        "rate_limit_logins": "",
        "rate_limit_logins_per_address": "",
    }
    return settings_for(infra, topics, **{**none, **limits})


async def deposit(api: httpx.AsyncClient, subject: str) -> httpx.Response:
    return await api.post(
        "/accounts/some-account/deposits",
        json={"amount": "1.00"},
        headers={**ASYNC, **bearer(subject, "teller")},
    )


def assert_too_many(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.json()["code"] == "too_many_requests"
    assert int(answer.headers["Retry-After"]) >= 1


async def test_a_user_past_the_write_limit_gets_429_and_nothing_is_recorded(
    infra: Endpoints, topics: TopicSettings
) -> None:
    settings = limited(infra, topics, rate_limit_writes="3/minute")
    async with serving(settings) as api:
        for _ in range(3):
            assert (await deposit(api, "teller-one")).status_code == 202
        recorded = await sent_so_far(settings)
        assert_too_many(await deposit(api, "teller-one"))
        assert await sent_so_far(settings) == recorded
        # Counted per subject: another user from the same address is not held back.
        assert (await deposit(api, "teller-two")).status_code == 202


async def test_one_address_past_its_write_limit_gets_429_whoever_sends(
    infra: Endpoints, topics: TopicSettings
) -> None:
    settings = limited(infra, topics, rate_limit_writes_per_address="3/minute")
    async with serving(settings) as api:
        for subject in ("teller-one", "teller-two", "teller-three"):
            assert (await deposit(api, subject)).status_code == 202
        assert_too_many(await deposit(api, "teller-four"))


async def login(api: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form: dict[str, Any] = {"username": username, "password": password}
    return await api.post("/token", data=form)


async def test_guessing_a_password_is_held_back_even_with_the_right_one_after(
    infra: Endpoints, topics: TopicSettings
) -> None:
    settings = limited(infra, topics, rate_limit_logins="2/minute")
    passwords = demo_passwords(AUTH)
    async with serving(settings) as api:
        for _ in range(2):
            assert (await login(api, "alice", "not-her-password")).status_code == 401
        assert_too_many(await login(api, "alice", passwords["alice"]))
        # Per username: Bob logs in from the same address.
        assert (await login(api, "bob", passwords["bob"])).status_code == 200


async def test_logins_from_one_address_are_limited_across_usernames(
    infra: Endpoints, topics: TopicSettings
) -> None:
    settings = limited(infra, topics, rate_limit_logins_per_address="2/minute")
    async with serving(settings) as api:
        assert (await login(api, "nobody-1", "x")).status_code == 401
        assert (await login(api, "nobody-2", "x")).status_code == 401
        assert_too_many(await login(api, "nobody-3", "x"))


async def test_a_host_name_it_does_not_serve_is_refused(
    infra: Endpoints, topics: TopicSettings
) -> None:
    """DNS rebinding: a page of another site reaches 127.0.0.1 under its own name."""
    settings = settings_for(infra, topics, allowed_hosts="127.0.0.1,localhost")
    async with serving(settings) as api:
        recorded = await sent_so_far(settings)
        refused = await api.post(
            "/accounts",
            json={"owner": "Eve"},
            headers={**ASYNC, "Host": "rebind.attacker.example"},
        )
        assert refused.status_code == 400
        assert await sent_so_far(settings) == recorded
        served = await api.get("/health", headers={"Host": "localhost:8001"})
        assert served.status_code == 200


async def test_the_query_api_refuses_a_host_name_it_does_not_serve(isolated: Endpoints) -> None:
    async with serving_queries(query_settings_for(isolated, isolated.pg.read_db)) as served:
        refused = await served.client.get("/accounts", headers={"Host": "rebind.example"})
        assert refused.status_code == 400


async def test_past_its_concurrency_limit_a_process_answers_503_at_once(
    isolated: Endpoints,
) -> None:
    """With a limit of 3 (uvicorn counts the connection that asks too), two change streams
    hold the places; the next request is refused at once instead of queued, and served again
    once the streams are closed."""
    pool = await migrated_pool(isolated.pg.dsn(isolated.pg.read_db), "bank_projector.migrations")
    await pool.close()
    port = free_port()
    env = service_env(isolated.kafka, isolated.pg, TopicSettings()) | {
        "BANK_QUERY_API_HTTP_PORT": str(port),
        "BANK_QUERY_API_HTTP_LIMIT_CONCURRENCY": "3",
    }
    service = await ServiceProcess("bank_query_api", env, port).start()
    try:
        await service.wait_ready()
        base = f"http://127.0.0.1:{port}"
        async with contextlib.AsyncExitStack() as streams:
            for _ in range(2):
                client = await streams.enter_async_context(
                    httpx.AsyncClient(base_url=base, headers=bearer(), timeout=10)
                )
                stream = await streams.enter_async_context(client.stream("GET", "/changes"))
                assert stream.status_code == 200
            async with httpx.AsyncClient(base_url=base, timeout=10) as other:
                assert (await other.get("/health")).status_code == 503
        async with httpx.AsyncClient(base_url=base, timeout=10) as other:

            async def served_again() -> bool:
                return (await other.get("/health")).status_code == 200

            await eventually(served_again, what="a place freed by the closed streams")
    finally:
        await service.stop()
