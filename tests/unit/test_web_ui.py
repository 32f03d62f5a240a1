"""The web UI's server side without a database: the pages and their config are served with
their security headers and keep to them (no inline script), every error code and failure
reason has plain words, the forms keep to the command API's limits, and the change stream
needs a token, sends `changed`, a heartbeat, and ends when the server closes it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import get_args

import httpx
import pytest

from bank_query_api.app import create_app
from bank_query_api.changes import CHANGED, HEARTBEAT, change_events
from bank_query_api.settings import QueryApiSettings
from bank_query_api.web import (
    CHART_EVENTS,
    COMMAND_ERRORS,
    FIELD_LABELS,
    LOGIN_NOTES,
    MONEY_HINTS,
    PAGES,
    TRANSFER_REASONS,
    page_config,
)
from bank_shared.auth.material import token_issuer
from bank_shared.clock import utc_now
from bank_shared.contracts.actors import BANK_TELLER
from bank_shared.contracts.outcomes import RejectionCode
from bank_shared.contracts.transfers import TransferFailureReason
from bank_shared.text import DESCRIPTION_MAX_LENGTH
from tests.logins import AUTH

# --- the pages ----------------------------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(QueryApiSettings(command_api_url="http://commands.test:9001/"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://query-api") as client:
        yield client


@pytest.mark.parametrize(
    ("path", "script"),
    [
        ("/ui/", "dashboard.js"),
        ("/ui/accounts/alice", "account.js"),
        ("/ui/transfers/t-1", "transfer.js"),
        ("/ui/login", "login.js"),
    ],
)
async def test_each_page_is_html_that_loads_its_config_and_scripts(
    client: httpx.AsyncClient, path: str, script: str
) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for needed in ("/ui/config.js", "/ui/static/bank.js", f"/ui/static/{script}"):
        assert f'src="{needed}"' in page.text
        assert (await client.get(needed)).status_code == 200
    assert (await client.get("/ui/static/bank.css")).status_code == 200


async def test_the_account_page_draws_its_chart_with_a_script_of_its_own(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/ui/accounts/alice")).text
    # chart.js uses bank.js and account.js uses chart.js: deferred scripts run in this order.
    scripts = ["/ui/static/bank.js", "/ui/static/chart.js", "/ui/static/account.js"]
    assert [page.index(f'src="{script}"') for script in scripts] == sorted(
        page.index(f'src="{script}"') for script in scripts
    )
    assert (await client.get("/ui/static/chart.js")).status_code == 200
    for needed in ('id="balance-chart-drawing"', 'id="balance-chart-text"', "<th>Description</th>"):
        assert needed in page


async def test_the_transfer_form_takes_a_description_as_long_as_the_api_does(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/ui/")).text
    assert f'<input name="description" maxlength="{DESCRIPTION_MAX_LENGTH}"' in page, (
        "the dashboard's description field and bank_shared.text disagree"
    )
    assert 'id="description"' in (await client.get("/ui/transfers/t-1")).text


def test_the_chart_reads_no_more_events_than_the_api_allows() -> None:
    assert page_config(QueryApiSettings())["chartEvents"] == CHART_EVENTS
    narrow = QueryApiSettings(max_limit=100, default_limit=50)
    assert page_config(narrow)["chartEvents"] == 100


async def test_the_root_leads_to_the_dashboard(client: httpx.AsyncClient) -> None:
    answer = await client.get("/")
    assert (answer.status_code, answer.headers["location"]) == (307, "/ui/")


async def test_the_config_tells_the_pages_where_the_command_api_is(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/ui/config.js")
    assert answer.headers["content-type"].startswith("text/javascript")
    prefix, suffix = "window.BANK_CONFIG = ", ";\n"
    assert answer.text.startswith(prefix)
    assert answer.text.endswith(suffix)
    config = json.loads(answer.text[len(prefix) : -len(suffix)])
    assert config["commandApi"] == "http://commands.test:9001"
    assert config == page_config(QueryApiSettings(command_api_url="http://commands.test:9001"))


def test_the_command_api_is_on_its_local_address_by_default() -> None:
    assert page_config(QueryApiSettings())["commandApi"] == "http://127.0.0.1:8001"


async def test_the_change_stream_is_in_the_api_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert (
        "text/event-stream" in document["paths"]["/changes"]["get"]["responses"]["200"]["content"]
    )
    assert not any(path.startswith("/ui") for path in document["paths"])


# --- security headers ---------------------------------------------------------------------------

UI_ADDRESSES = [
    "/ui/",
    "/ui/login",
    "/ui/accounts/alice",
    "/ui/transfers/t-1",
    "/ui/config.js",
    "/ui/static/bank.js",
    "/ui/static/bank.css",
]


def directives(policy: str) -> dict[str, list[str]]:
    parsed = [directive.split() for directive in policy.split(";")]
    return {name: sources for name, *sources in parsed}


@pytest.mark.parametrize("path", UI_ADDRESSES)
async def test_the_ui_is_served_with_its_security_headers(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 200
    policy = directives(answer.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    # Our own files only: no inline script or style, no eval.
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    # Fetches to this API and the command API, nothing else.
    assert policy["connect-src"] == ["'self'", "http://commands.test:9001"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


async def test_the_api_and_its_docs_are_not_held_to_the_pages_policy(
    client: httpx.AsyncClient,
) -> None:
    # Swagger UI runs inline script from a CDN: the pages' policy would break it.
    for path in ("/docs", "/openapi.json"):
        answer = await client.get(path)
        assert answer.status_code == 200
        assert "content-security-policy" not in answer.headers


class InlineCode(HTMLParser):
    """What a `script-src 'self'; style-src 'self'` policy refuses: inline scripts, event
    handler attributes, `javascript:` links, style elements and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"{tag} {name}=")
            if (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}={value}")


@pytest.mark.parametrize("page", sorted(PAGES.glob("*.html")), ids=lambda path: path.name)
def test_the_pages_have_no_inline_code_their_policy_would_refuse(page: Path) -> None:
    parser = InlineCode()
    parser.feed(page.read_text())
    assert parser.found == []


def test_the_login_page_has_words_for_each_reason_a_page_sends_the_browser_there() -> None:
    script = (PAGES / "static" / "bank.js").read_text()
    reasons = set(re.findall(r'toLogin\("([a-z-]+)"', script))
    assert reasons == set(LOGIN_NOTES)


# --- the change stream needs a token --------------------------------------------------------------


async def test_the_change_stream_needs_a_valid_bearer_token(client: httpx.AsyncClient) -> None:
    long_ago = utc_now() - timedelta(days=1)
    expired = token_issuer(AUTH).issue(BANK_TELLER, long_ago)
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {expired}"},
    ):
        answer = await client.get("/changes", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["code"] == "not_authenticated"


async def test_the_change_stream_is_documented_as_needing_one(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["paths"]["/changes"]["get"]["security"]


# --- plain words --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", get_args(RejectionCode))
def test_every_rejection_of_the_write_side_has_plain_words(code: str) -> None:
    assert COMMAND_ERRORS[code].endswith(".")


@pytest.mark.parametrize(
    "code", ["not_authenticated", "teller_only", "unknown_user", "too_many_requests"]
)
def test_every_refusal_of_the_command_api_a_page_can_meet_has_plain_words(code: str) -> None:
    assert COMMAND_ERRORS[code].endswith(".")


@pytest.mark.parametrize("reason", get_args(TransferFailureReason))
def test_every_reason_a_transfer_fails_has_plain_words(reason: str) -> None:
    assert TRANSFER_REASONS[reason]
    assert "_" not in TRANSFER_REASONS[reason]


def test_every_field_a_form_sends_has_a_label() -> None:
    from bank_command_api.schemas import AmountRequest, OpenAccountRequest, TransferRequest

    sent = {
        *OpenAccountRequest.model_fields,
        *AmountRequest.model_fields,
        *TransferRequest.model_fields,
    } - {"transfer_id"}
    assert sent <= set(FIELD_LABELS)


def test_every_amount_field_has_its_rules_in_plain_words() -> None:
    from bank_command_api.problems import AMOUNT_FIELDS

    assert set(MONEY_HINTS) == AMOUNT_FIELDS
    assert "more than zero" in MONEY_HINTS["amount"]
    assert "zero or more" in MONEY_HINTS["initial_balance"]


# --- the change stream --------------------------------------------------------------------------


class Changes:
    """The listener's side of next_change(): a fresh event after each change."""

    def __init__(self) -> None:
        self.next = asyncio.Event()

    def next_change(self) -> asyncio.Event:
        return self.next

    def change(self) -> None:
        current, self.next = self.next, asyncio.Event()
        current.set()


async def test_it_opens_at_once_and_sends_changed_after_each_change() -> None:
    changes, closing = Changes(), asyncio.Event()
    stream = change_events(changes.next_change, closing, heartbeat=60)
    assert (await anext(stream)).startswith("retry: ")
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    changes.change()
    assert await asyncio.wait_for(waiting, 1) == CHANGED
    changes.change()
    assert await asyncio.wait_for(anext(stream), 1) == CHANGED
    await stream.aclose()


async def test_a_change_while_the_client_connects_is_not_lost() -> None:
    changes, closing = Changes(), asyncio.Event()
    stream = change_events(changes.next_change, closing, heartbeat=60)
    await anext(stream)
    changes.change()  # before the stream waits again
    assert await asyncio.wait_for(anext(stream), 1) == CHANGED
    await stream.aclose()


async def test_several_changes_during_one_wait_are_sent_once() -> None:
    changes, closing = Changes(), asyncio.Event()
    stream = change_events(changes.next_change, closing, heartbeat=0.2)
    await anext(stream)
    changes.change()
    changes.change()
    changes.change()
    assert await asyncio.wait_for(anext(stream), 1) == CHANGED
    assert await asyncio.wait_for(anext(stream), 1) == HEARTBEAT
    await stream.aclose()


async def test_quiet_sends_heartbeats() -> None:
    changes, closing = Changes(), asyncio.Event()
    stream = change_events(changes.next_change, closing, heartbeat=0.01)
    await anext(stream)
    assert [await anext(stream), await anext(stream)] == [HEARTBEAT, HEARTBEAT]
    await stream.aclose()


async def test_closing_ends_a_waiting_stream() -> None:
    changes, closing = Changes(), asyncio.Event()
    stream = change_events(changes.next_change, closing, heartbeat=60)
    await anext(stream)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.01)
    closing.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
