"""The web UI in headless Chromium against the whole bank: logging in and out on the login page,
accounts opened and money moved from the pages, balances and statuses that change on the page
without a reload, owners and descriptions beside the ids, the balance chart, errors next to the
form that caused them, the "updating…" mark while the projector lags, a customer who sees only
her own accounts and forms, an Idempotency-Key per submission, and the pages under their
Content-Security-Policy. Screenshots of the pages are saved under test-artifacts/web-ui/."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Route, expect

from bank_deploy.credentials import DEMO_USERS, demo_passwords
from bank_query_api.web import LOGIN_NOTES, LOGIN_REFUSED
from bank_shared.auth.material import token_issuer
from bank_shared.clock import utc_now
from bank_shared.contracts.actors import Actor
from tests.browser_client import artifacts_dir, headless_chromium
from tests.e2e.conftest import Cluster
from tests.logins import AUTH, bearer
from tests.support import new_id

pytestmark = pytest.mark.e2e

# The first commands of a session also wait for consumer groups to settle.
expect.set_options(timeout=30_000)
VIEWPORT = {"width": 1100, "height": 900}
# Marks the document: still there at the end means the page never reloaded.
SAME_DOCUMENT = "window.__sameDocument = true"
STILL_SAME_DOCUMENT = "window.__sameDocument === true"
# How Chromium reports what a Content-Security-Policy refused, on the console.
CSP_VIOLATION = "Content Security Policy"
TOKEN_KEY = "bank.token"  # as bank.js keeps it in sessionStorage


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with headless_chromium() as chromium:
        yield chromium


@pytest.fixture
async def tab(browser: Browser) -> AsyncIterator[Page]:
    """A new browser tab, logged out. The test fails on a JavaScript error or on anything the
    pages' Content-Security-Policy refused."""
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    tab = await context.new_page()
    errors: list[str] = []
    refused: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if CSP_VIOLATION in message.text:
            refused.append(message.text)

    tab.on("console", on_console)
    try:
        yield tab
    finally:
        await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert refused == [], f"The Content-Security-Policy refused: {refused}"


@pytest.fixture(scope="module")
async def teller_token(cluster: Cluster, browser: Browser) -> str:
    """The teller's token, from logging in on the login page once for all the tests here: the
    command API lets one user log in only so many times a minute."""
    context = await browser.new_context()
    try:
        tab = await context.new_page()
        await log_in(tab, cluster, "teller")
        token: str = await tab.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')")
        return token
    finally:
        await context.close()


@pytest.fixture
async def page(cluster: Cluster, tab: Page, teller_token: str) -> Page:
    """A tab logged in as the teller: the token kept where the login page keeps it."""
    await tab.goto(f"{cluster.query_api}/ui/login")
    await keep_token(tab, teller_token)
    return tab


async def keep_token(page: Page, token: str) -> None:
    await page.evaluate("([key, token]) => sessionStorage.setItem(key, token)", [TOKEN_KEY, token])


async def log_in(page: Page, cluster: Cluster, username: str, then: str = "/ui/") -> None:
    """Log in on the login page (with the password `make run` would have written) and wait
    for the page it leads to."""
    if not page.url.startswith(f"{cluster.query_api}/ui/login"):
        await page.goto(f"{cluster.query_api}/ui/login")
    form = page.locator("#log-in")
    await form.get_by_label("Username").fill(username)
    await form.get_by_label("Password").fill(demo_passwords(AUTH)[username])
    await form.get_by_role("button").click()
    await expect(page).to_have_url(f"{cluster.query_api}{then}")
    # "alice · customer"; the teller is named once.
    role = DEMO_USERS[username]
    shown = username if role == username else f"{username} · {role}"
    await expect(page.locator("#who")).to_have_text(shown)


async def live(page: Page, url: str) -> None:
    """Open a page and wait until it follows the change stream."""
    await page.goto(url)
    await expect(page.locator("#live")).to_have_text("live")
    await page.evaluate(SAME_DOCUMENT)


def account_row(page: Page, account_id: str) -> Any:
    return page.locator(f'#account-rows tr[data-account="{account_id}"]')


def transfer_row(page: Page, transfer_id: str) -> Any:
    return page.locator(f'#transfer-rows tr[data-transfer="{transfer_id}"]')


async def submit(page: Page, form: Any, path: str, status: int, cleared: str) -> Any:
    """Click the form's button and return the answer once the page has handled it, which is
    when it clears the form: the new row can show before that (the projector may beat the
    answer), and the next entry typed earlier would be cleared with it."""
    async with page.expect_response(
        lambda r: r.url.endswith(path) and r.request.method == "POST"
    ) as answered:
        await form.get_by_role("button").click()
    answer = await answered.value
    assert answer.status == status, await answer.text()
    await expect(form.get_by_label(cleared)).to_have_value("")
    return answer


async def open_account_on_dashboard(page: Page, owner: str, balance: str) -> str:
    account_id = new_id(owner.lower())
    form = page.locator("#open-account")
    await form.get_by_label("Owner").fill(owner)
    await form.get_by_label("Opening balance").fill(balance)
    await form.get_by_label("Account id").fill(account_id)
    await submit(page, form, "/accounts", 201, cleared="Owner")
    await expect(account_row(page, account_id).locator(".balance")).to_have_text(f"€{balance}")
    return account_id


async def start_transfer_on_dashboard(
    page: Page, source: str, target: str, amount: str, description: str = ""
) -> str:
    form = page.locator("#start-transfer")
    await form.get_by_label("From account").fill(source)
    await form.get_by_label("To account").fill(target)
    await form.get_by_label("Amount").fill(amount)
    await form.get_by_label("Description").fill(description)
    answer = await submit(page, form, "/transfers", 202, cleared="Amount")
    transfer_id: str = (await answer.json())["transfer_id"]
    return transfer_id


async def open_account(
    cluster: Cluster,
    owner: str,
    balance: str,
    account_id: str | None = None,
    owned_by: str = "teller",
) -> str:
    """Opened by the teller (with money in it) for `owned_by`."""
    account_id = account_id or new_id(owner.lower())
    async with httpx.AsyncClient(
        base_url=cluster.command_api, headers=bearer(), timeout=30
    ) as commands:
        answer = await commands.post(
            "/accounts",
            json={
                "owner": owner,
                "initial_balance": balance,
                "account_id": account_id,
                "owned_by": owned_by,
            },
        )
    assert answer.status_code == 201, answer.text
    return account_id


async def transfer_between(
    cluster: Cluster, source: str, target: str, amount: str, description: str
) -> str:
    async with httpx.AsyncClient(
        base_url=cluster.command_api, headers=bearer(), timeout=30
    ) as commands:
        answer = await commands.post(
            "/transfers",
            json={
                "source_account_id": source,
                "target_account_id": target,
                "amount": amount,
                "description": description,
            },
        )
    assert answer.status_code == 202, answer.text
    transfer_id: str = answer.json()["transfer_id"]
    return transfer_id


async def deposit(cluster: Cluster, account_id: str, amount: str) -> None:
    async with httpx.AsyncClient(
        base_url=cluster.command_api, headers=bearer(), timeout=30
    ) as commands:
        answer = await commands.post(f"/accounts/{account_id}/deposits", json={"amount": amount})
    assert answer.status_code == 200, answer.text


async def test_accounts_opened_and_a_transfer_made_on_the_dashboard_show_up_without_reload(
    cluster: Cluster, page: Page
) -> None:
    await live(page, f"{cluster.query_api}/ui/")
    alice = await open_account_on_dashboard(page, "Alice", "100.00")
    bob = await open_account_on_dashboard(page, "Bob", "20.00")

    transfer_id = await start_transfer_on_dashboard(page, alice, bob, "30.00", "Rent for March")

    await expect(transfer_row(page, transfer_id).locator(".status")).to_have_text("completed")
    row = transfer_row(page, transfer_id)
    await expect(row.locator(".description")).to_have_text("Rent for March")
    # Each account's holder beside its id, which still leads to its page.
    await expect(row.locator(".from .owner")).to_have_text("Alice")
    await expect(row.locator(".from .account-id")).to_have_text(alice)
    await expect(row.locator(".to .owner")).to_have_text("Bob")
    await expect(row.get_by_role("link", name=bob)).to_have_attribute("href", f"/ui/accounts/{bob}")
    await expect(account_row(page, alice).locator(".balance")).to_have_text("€70.00")
    await expect(account_row(page, bob).locator(".balance")).to_have_text("€50.00")
    await expect(page.locator("#account-rows .updating")).to_have_count(0)
    assert await page.evaluate(STILL_SAME_DOCUMENT), "the dashboard reloaded"
    await page.screenshot(path=artifacts_dir() / "dashboard.png", full_page=True)

    await transfer_row(page, transfer_id).get_by_role("link", name=transfer_id).click()
    await expect(page.locator("#status")).to_have_text("completed")
    await expect(page.locator("#description")).to_have_text("Rent for March")
    await expect(page.locator("#summary")).to_have_text(f"€30.00 from Alice {alice} to Bob {bob}")
    steps = page.locator("#timeline li")
    await expect(steps).to_have_count(3)
    await expect(steps.nth(0)).to_contain_text(f"Started: €30.00 from {alice} to {bob}")
    await expect(steps.nth(1)).to_contain_text(f"Debited from {alice}")
    await expect(steps.nth(2)).to_contain_text(f"Completed: credited to {bob}")
    await expect(page.locator("#timeline li.done")).to_have_count(3)
    await page.screenshot(path=artifacts_dir() / "transfer.png", full_page=True)


async def test_a_failing_transfer_shows_its_reason_on_the_dashboard_and_its_page(
    cluster: Cluster, page: Page
) -> None:
    await live(page, f"{cluster.query_api}/ui/")
    carol = await open_account_on_dashboard(page, "Carol", "10.00")
    dave = await open_account_on_dashboard(page, "Dave", "0.00")

    too_much = await start_transfer_on_dashboard(page, carol, dave, "25.00")
    await expect(transfer_row(page, too_much).locator(".status")).to_have_text(
        "failed: the source account did not have enough money"
    )
    to_nobody = await start_transfer_on_dashboard(page, carol, new_id("nobody"), "4.00")
    await expect(transfer_row(page, to_nobody).locator(".status")).to_have_text(
        "failed: the target account does not exist (refunded)"
    )
    await expect(account_row(page, carol).locator(".balance")).to_have_text("€10.00")
    assert await page.evaluate(STILL_SAME_DOCUMENT), "the dashboard reloaded"

    await page.goto(f"{cluster.query_api}/ui/transfers/{to_nobody}")
    steps = page.locator("#timeline li")
    await expect(steps).to_have_count(4)
    await expect(steps.nth(1)).to_contain_text(f"Debited from {carol}")
    await expect(steps.nth(2)).to_contain_text("Failed: the target account does not exist")
    await expect(steps.nth(3)).to_contain_text(f"Refunded to {carol}")
    await expect(page.locator("#timeline li.failed")).to_have_count(1)
    await page.screenshot(path=artifacts_dir() / "transfer-refunded.png", full_page=True)

    await page.goto(f"{cluster.query_api}/ui/transfers/{too_much}")
    await expect(page.locator("#timeline li")).to_have_count(2)
    await expect(page.locator("#timeline li.failed")).to_contain_text(
        "Failed: the source account did not have enough money"
    )


async def test_the_account_page_deposits_withdraws_and_lists_its_events_newest_first(
    cluster: Cluster, page: Page
) -> None:
    erin = await open_account(cluster, "Erin", "50.00")
    await live(page, f"{cluster.query_api}/ui/accounts/{erin}")
    await expect(page.locator("#balance")).to_have_text("€50.00")

    await page.locator("#deposit").get_by_label("Amount").fill("25.50")
    await page.locator("#deposit").get_by_role("button").click()
    await expect(page.locator("#balance")).to_have_text("€75.50")
    await page.locator("#withdraw").get_by_label("Amount").fill("10")
    await page.locator("#withdraw").get_by_role("button").click()
    await expect(page.locator("#balance")).to_have_text("€65.50")

    rows = page.locator("#event-rows tr")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_contain_text("Withdrawal")
    await expect(rows.nth(0)).to_contain_text("€65.50")
    await expect(rows.nth(1)).to_contain_text("Deposit")
    await expect(rows.nth(2)).to_contain_text("Opened")
    await expect(page.locator("#balance-mark .updating")).to_have_count(0)

    # The balance over time: one point per event, and the same in words.
    chart = page.locator("#balance-chart svg")
    await expect(chart).to_have_attribute("role", "img")
    await expect(chart.locator("title").first).to_have_text("Balance over time")
    await expect(chart.locator("circle")).to_have_count(3)
    caption = page.locator("#balance-chart-text")
    await expect(caption).to_contain_text(
        "Balance over its 3 events since it was opened: from €50.00"
    )
    await expect(caption).to_contain_text("to €65.50")
    await expect(caption).to_contain_text("lowest €50.00, highest €75.50.")
    assert await chart.get_attribute("aria-describedby") == "balance-chart-text"
    assert await page.evaluate(STILL_SAME_DOCUMENT), "the account page reloaded"


async def test_the_account_page_shows_what_each_transfer_was_for(
    cluster: Cluster, page: Page
) -> None:
    ivan = await open_account(cluster, "Ivan", "80.00")
    judy = await open_account(cluster, "Judy", "0.00")
    await live(page, f"{cluster.query_api}/ui/accounts/{judy}")

    rows = page.locator("#event-rows tr")
    await transfer_between(cluster, ivan, judy, "12.00", "Rent for March")
    await expect(rows).to_have_count(2)  # one after the other: the saga may run two at once
    await transfer_between(cluster, ivan, judy, "3.00", "Pizza")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0).locator(".description")).to_have_text("Pizza")
    await expect(rows.nth(1).locator(".description")).to_have_text("Rent for March")
    await expect(rows.nth(2).locator(".description")).to_have_text("")
    await expect(page.locator("#balance")).to_have_text("€15.00")
    await expect(page.locator("#balance-chart circle")).to_have_count(3)
    await expect(page.locator("#balance-chart-text")).to_contain_text("highest €15.00.")
    assert await page.evaluate(STILL_SAME_DOCUMENT), "the account page reloaded"
    await page.screenshot(path=artifacts_dir() / "account.png", full_page=True)


async def test_errors_from_commands_appear_next_to_the_form_in_plain_words(
    cluster: Cluster, page: Page
) -> None:
    frank = await open_account(cluster, "Frank", "5.00")
    await live(page, f"{cluster.query_api}/ui/accounts/{frank}")
    withdraw, deposit = page.locator("#withdraw"), page.locator("#deposit")

    await withdraw.get_by_label("Amount").fill("6.00")
    await withdraw.get_by_role("button").click()
    await expect(withdraw.locator(".form-message.error")).to_have_text(
        "Not enough money in the account for this."
    )
    await expect(deposit.locator(".form-message")).to_have_text("")

    await deposit.get_by_label("Amount").fill("1.234")
    await deposit.get_by_role("button").click()
    await expect(deposit.locator(".form-message.error")).to_have_text(
        "Amount: enter more than zero euros, with at most two decimals, like 10.50."
    )

    await live(page, f"{cluster.query_api}/ui/accounts/{new_id('nobody')}")
    await expect(page.locator("#missing")).to_contain_text("There is no such account")
    await page.locator("#deposit").get_by_label("Amount").fill("1.00")
    await page.locator("#deposit").get_by_role("button").click()
    await expect(page.locator("#deposit .form-message.error")).to_have_text(
        "There is no such account. Check the account id."
    )

    await live(page, f"{cluster.query_api}/ui/")
    transfer = page.locator("#start-transfer")
    await transfer.get_by_label("From account").fill(frank)
    await transfer.get_by_label("To account").fill(frank)
    await transfer.get_by_label("Amount").fill("1.00")
    await transfer.get_by_role("button").click()
    await expect(transfer.locator(".form-message.error")).to_have_text(
        "Choose two different accounts."
    )
    await expect(page.locator("#open-account .form-message")).to_have_text("")


async def test_owners_and_descriptions_are_shown_as_text_never_run_as_markup(
    cluster: Cluster, page: Page
) -> None:
    owner = '<img src=x onerror="window.injected = true">Eve'
    description = '<img src=x onerror="window.injected = true">&amp; <b>rent</b>'
    eve = await open_account(cluster, owner, "5.00", account_id=new_id("eve"))
    mallory = await open_account(
        cluster, "</svg><script>window.injected = true</script>", "0", new_id("mallory")
    )
    transfer_id = await transfer_between(cluster, eve, mallory, "1.00", description)
    await live(page, f"{cluster.query_api}/ui/")
    await expect(account_row(page, eve)).to_contain_text(owner)
    await expect(account_row(page, eve).locator("img")).to_have_count(0)
    await expect(transfer_row(page, transfer_id).locator(".description")).to_have_text(description)
    await expect(transfer_row(page, transfer_id).locator(".from .owner")).to_have_text(owner)
    await expect(transfer_row(page, transfer_id).locator("img, b, script")).to_have_count(0)

    for path in (f"/ui/accounts/{eve}", f"/ui/accounts/{mallory}", f"/ui/transfers/{transfer_id}"):
        await live(page, f"{cluster.query_api}{path}")
        await expect(page.locator("body")).to_contain_text(description)
        await expect(page.locator("main img, main b, main script")).to_have_count(0)
    assert await page.evaluate("window.injected === undefined"), "user text ran as markup"


async def test_a_write_shows_updating_until_the_projector_has_applied_it(
    cluster: Cluster, page: Page
) -> None:
    grace = await open_account(cluster, "Grace", "10.00")
    await live(page, f"{cluster.query_api}/ui/accounts/{grace}")
    await expect(page.locator("#balance")).to_have_text("€10.00")
    projector = cluster.services.named("projector")
    cluster.services.stop(projector)
    try:
        await page.locator("#deposit").get_by_label("Amount").fill("5.00")
        await page.locator("#deposit").get_by_role("button").click()
        # Accepted by the write side, not yet in the read model.
        await expect(page.locator("#balance-mark")).to_have_text("updating…")
        await expect(page.locator("#balance")).to_have_text("€10.00")
    finally:
        cluster.services.start(projector)
    await expect(page.locator("#balance")).to_have_text("€15.00")
    await expect(page.locator("#balance-mark")).to_have_text("")
    assert await page.evaluate(STILL_SAME_DOCUMENT), "the account page reloaded"


async def test_open_pages_do_not_hold_up_a_query_api_restart_and_follow_it_again(
    cluster: Cluster, page: Page
) -> None:
    heidi = await open_account(cluster, "Heidi", "1.00")
    await live(page, f"{cluster.query_api}/ui/accounts/{heidi}")
    query_api = cluster.services.named("query-api")

    began = time.monotonic()
    cluster.services.stop(query_api)
    try:
        stopping = time.monotonic() - began
        assert stopping < 10, f"the query API took {stopping:.1f} s to stop with a page open"
        await expect(page.locator("#live")).to_have_text("reconnecting…")
    finally:
        # The cluster is the session's: the tests after this one need the query API.
        cluster.services.start(query_api)
    await expect(page.locator("#live")).to_have_text("live")
    await deposit(cluster, heidi, "2.00")
    await expect(page.locator("#balance")).to_have_text("€3.00")
    assert await page.evaluate(STILL_SAME_DOCUMENT), "the account page reloaded"


async def test_the_login_page_lets_the_teller_in_and_logging_out_leads_back_to_it(
    cluster: Cluster, tab: Page
) -> None:
    await tab.goto(f"{cluster.query_api}/ui/")
    # Without a token a page sends the browser to the login page, which says why and where
    # the demo passwords are.
    await expect(tab).to_have_url(re.compile(r"/ui/login\?why=login&next="))
    await expect(tab.locator("#why")).to_have_text(LOGIN_NOTES["login"])
    await expect(tab.locator("main")).to_contain_text(".bank/auth/demo-logins.json")
    form = tab.locator("#log-in")
    await form.get_by_label("Username").fill("teller")
    await form.get_by_label("Password").fill("not the password")
    await form.get_by_role("button").click()
    await expect(form.locator(".form-message.error")).to_have_text(LOGIN_REFUSED)

    await log_in(tab, cluster, "teller")
    await expect(tab.locator("#live")).to_have_text("live")
    await tab.screenshot(path=artifacts_dir() / "logged-in.png")
    await tab.get_by_role("button", name="Log out").click()
    await expect(tab).to_have_url(f"{cluster.query_api}/ui/login?why=logged-out")
    await expect(tab.locator("#why")).to_have_text(LOGIN_NOTES["logged-out"])
    assert await tab.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None
    await tab.screenshot(path=artifacts_dir() / "login.png")
    await tab.goto(f"{cluster.query_api}/ui/")
    await expect(tab).to_have_url(re.compile(r"/ui/login\?why=login&next="))


async def test_a_token_that_expires_on_an_open_page_leads_to_the_login_page_and_back(
    cluster: Cluster, page: Page
) -> None:
    kim = await open_account(cluster, "Kim", "5.00")
    await live(page, f"{cluster.query_api}/ui/accounts/{kim}")
    long_ago = utc_now() - 2 * timedelta(minutes=AUTH.token_minutes)
    expired = token_issuer(AUTH).issue(Actor(subject="teller", role="teller"), long_ago)
    await keep_token(page, expired)

    # The next change makes the page read again, with the expired token: 401.
    await deposit(cluster, kim, "1.00")
    await expect(page).to_have_url(re.compile(r"/ui/login\?why=expired&next="))
    await expect(page.locator("#why")).to_have_text(LOGIN_NOTES["expired"])
    await log_in(page, cluster, "teller", then=f"/ui/accounts/{kim}")
    await expect(page.locator("#balance")).to_have_text("€6.00")


async def test_a_customer_sees_only_her_accounts_and_the_forms_she_may_use(
    cluster: Cluster, page: Page
) -> None:
    # The teller opens an account for alice on the dashboard, and one for bob.
    await live(page, f"{cluster.query_api}/ui/")
    form = page.locator("#open-account")
    await form.get_by_label("Owner").fill("Alice")
    await form.get_by_label("Owned by").fill("alice")
    await form.get_by_label("Opening balance").fill("40.00")
    alices = (await (await submit(page, form, "/accounts", 201, cleared="Owner")).json())[
        "account_id"
    ]
    bobs = await open_account(cluster, "Bob", "20.00", owned_by="bob")
    await expect(account_row(page, alices).locator(".balance")).to_have_text("€40.00")
    await expect(account_row(page, bobs)).to_have_count(1)

    await page.get_by_role("button", name="Log out").click()
    await log_in(page, cluster, "alice")
    await expect(page.locator("#live")).to_have_text("live")
    await expect(account_row(page, alices).locator(".balance")).to_have_text("€40.00")
    await expect(account_row(page, bobs)).to_have_count(0)
    # She opens her own accounts, empty: no opening balance, account id or owner's login.
    form = page.locator("#open-account")
    for teller_only in ("Owned by", "Opening balance", "Account id"):
        await expect(form.get_by_label(teller_only)).to_be_hidden()
    await expect(form.locator("[data-role=customer]")).to_be_visible()
    await form.get_by_label("Owner").fill("Alice")
    opened = (await (await submit(page, form, "/accounts", 201, cleared="Owner")).json())[
        "account_id"
    ]
    await expect(account_row(page, opened).locator(".balance")).to_have_text("€0.00")

    transfer_id = await start_transfer_on_dashboard(page, alices, bobs, "15.00", "Rent")
    row = transfer_row(page, transfer_id)
    await expect(row.locator(".status")).to_have_text("completed")
    # Whom she paid: the account id, not its owner (nor its balance).
    await expect(row.locator(".to .account-id")).to_have_text(bobs)
    await expect(row.locator(".to .owner")).to_have_count(0)
    await expect(account_row(page, alices).locator(".balance")).to_have_text("€25.00")
    await expect(account_row(page, bobs)).to_have_count(0)
    await page.screenshot(path=artifacts_dir() / "dashboard-customer.png", full_page=True)

    # On her account's page she withdraws; cash deposits are a teller's.
    await live(page, f"{cluster.query_api}/ui/accounts/{alices}")
    await expect(page.locator("#deposit")).to_be_hidden()
    await expect(page.locator("#deposit-note")).to_be_visible()
    await page.locator("#withdraw").get_by_label("Amount").fill("5.00")
    await page.locator("#withdraw").get_by_role("button").click()
    await expect(page.locator("#balance")).to_have_text("€20.00")
    # Bob's account is no account of hers.
    await live(page, f"{cluster.query_api}/ui/accounts/{bobs}")
    await expect(page.locator("#missing")).to_contain_text("There is no such account")
    await expect(page.locator("#balance")).to_have_text("")


async def test_each_submission_has_its_own_idempotency_key_and_a_retry_keeps_it(
    cluster: Cluster, page: Page
) -> None:
    lee = await open_account(cluster, "Lee", "10.00")
    await live(page, f"{cluster.query_api}/ui/accounts/{lee}")
    deposits = f"{cluster.command_api}/accounts/{lee}/deposits"
    sent: list[Request] = []

    def on_request(request: Request) -> None:
        if request.url == deposits and request.method == "POST":
            sent.append(request)

    page.on("request", on_request)

    async def answer_lost(route: Route) -> None:
        """The bank gets the deposit and answers; the browser never sees the answer."""
        await route.fetch()
        await route.abort()

    await page.route(deposits, answer_lost)
    form = page.locator("#deposit")
    await form.get_by_label("Amount").fill("5.00")
    await form.get_by_role("button").click()
    await expect(form.locator(".form-message.error")).to_contain_text(
        "Cannot reach the command API"
    )
    await expect(page.locator("#balance")).to_have_text("€15.00")  # it did arrive
    await page.unroute(deposits)

    await form.get_by_role("button").click()  # the same submission again: done once
    await expect(form.get_by_label("Amount")).to_have_value("")
    await expect(form.locator(".form-message")).to_have_text("")
    await form.get_by_label("Amount").fill("5.00")  # a new one
    await form.get_by_role("button").click()
    await expect(page.locator("#balance")).to_have_text("€20.00")
    await expect(page.locator("#event-rows tr")).to_have_count(3)
    keys = [await request.header_value("idempotency-key") for request in sent]
    assert len(keys) == 3, keys
    assert keys[0] == keys[1] != keys[2], keys
    assert all(keys), keys


async def test_the_pages_send_security_headers_and_their_policy_is_in_force(
    cluster: Cluster, browser: Browser
) -> None:
    # A tab of its own: the `tab` fixture fails a test on what the policy refuses.
    context = await browser.new_context()
    try:
        tab = await context.new_page()
        for path in ("/ui/login", "/ui/static/bank.js"):
            answer = await tab.goto(f"{cluster.query_api}{path}")
            assert answer is not None
            headers = await answer.all_headers()
            policy = headers["content-security-policy"].split("; ")
            for directive in (
                "script-src 'self'",
                "style-src 'self'",
                f"connect-src 'self' {cluster.command_api}",
                "frame-ancestors 'none'",
            ):
                assert directive in policy, (directive, policy)
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"

        # An injected inline script does not run ...
        await tab.goto(f"{cluster.query_api}/ui/login")
        inject = (
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.injected = true'; document.head.append(s); }"
        )
        async with tab.expect_console_message(lambda m: CSP_VIOLATION in m.text) as refused:
            await tab.evaluate(inject)
        assert "script-src" in (await refused.value).text
        assert await tab.evaluate("window.injected === undefined"), "an inline script ran"

        # ... and no other page may frame ours.
        framing = await context.new_page()
        async with framing.expect_console_message(lambda m: CSP_VIOLATION in m.text) as refused:
            await framing.set_content(f'<iframe src="{cluster.query_api}/ui/login"></iframe>')
        assert "frame-ancestors" in (await refused.value).text
    finally:
        await context.close()


async def test_the_pages_logic_timeline_and_plain_words(cluster: Cluster, page: Page) -> None:
    await live(page, f"{cluster.query_api}/ui/")
    transfer = {
        "source_account_id": "a",
        "target_account_id": "b",
        "amount": "5.00",
        "started_at": "2026-01-15T09:30:00Z",
        "debited_at": None,
        "finished_at": None,
        "status": "started",
        "reason": None,
        "refunded": False,
    }
    steps = "(t) => Bank.timeline(t).map((s) => `${s.name}:${s.state}`)"
    assert await page.evaluate(steps, transfer) == [
        "started:done",
        "debited:waiting",
        "completed:waiting",
    ]
    failed_early = {**transfer, "status": "failed", "reason": "insufficient_funds"}
    assert await page.evaluate(steps, failed_early) == ["started:done", "failed:failed"]
    refunded = {
        **transfer,
        "status": "failed",
        "reason": "target_account_not_found",
        "refunded": True,
        "debited_at": "2026-01-15T09:30:01Z",
    }
    assert await page.evaluate(steps, refunded) == [
        "started:done",
        "debited:done",
        "failed:failed",
        "refunded:done",
    ]
    plain = "([status, problem]) => Bank.plainError(status, problem)"
    assert await page.evaluate(plain, [409, {"code": "insufficient_funds"}]) == (
        "Not enough money in the account for this."
    )
    assert await page.evaluate(plain, [409, {"code": "new_code", "message": "As said."}]) == (
        "As said."
    )
    assert await page.evaluate(
        plain,
        [422, {"code": "validation_error", "errors": [{"field": "owner", "message": "too long"}]}],
    ) == ("Owner: too long")
    assert await page.evaluate(plain, [502, None]) == (
        "The bank answered 502. Try again in a moment."
    )


async def test_the_chart_s_words_and_drawing_for_few_and_many_events(
    cluster: Cluster, page: Page
) -> None:
    await live(page, f"{cluster.query_api}/ui/accounts/{new_id('nobody')}")
    rows = [  # newest first, as the API lists them
        {"version": 3, "balance_after": "5.00", "occurred_at": "2026-01-15T09:32:00Z"},
        {"version": 2, "balance_after": "25.00", "occurred_at": "2026-01-15T09:31:00Z"},
        {"version": 1, "balance_after": "10.00", "occurred_at": "2026-01-15T09:30:00Z"},
    ]
    said = "([rows, complete]) => BalanceChart.summary(BalanceChart.pointsOf(rows), complete)"
    whole = await page.evaluate(said, [rows, True])
    assert whole.startswith("Balance over its 3 events since it was opened: from €10.00 (")
    assert whole.endswith("lowest €5.00, highest €25.00.")
    assert "its last 2 events" in await page.evaluate(said, [rows[:2], False])
    assert (await page.evaluate(said, [rows[2:], True])).startswith("Balance €10.00 since ")
    assert await page.evaluate(said, [[], True]) == "No events yet."
    drawn = (
        "(rows) => { const svg = BalanceChart.draw(BalanceChart.pointsOf(rows), 'x');"
        " return svg && [svg.querySelectorAll('circle').length, svg.getAttribute('viewBox')]; }"
    )
    assert await page.evaluate(drawn, rows) == [3, "0 0 900 150"]
    assert await page.evaluate(drawn, rows[2:]) == [1, "0 0 900 150"]
    assert await page.evaluate(drawn, []) is None
