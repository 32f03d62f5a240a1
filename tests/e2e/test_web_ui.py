"""The web UI in headless Chromium against the whole bank: accounts opened and money moved
from the pages, balances and statuses that change on the page without a reload, owners and
descriptions beside the ids, the balance chart, errors next to the form that caused them, the
"updating…" mark while the projector lags. Screenshots of the three pages are saved under
test-artifacts/web-ui/."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser_client import artifacts_dir, headless_chromium
from tests.e2e.conftest import Cluster
from tests.support import new_id

pytestmark = pytest.mark.e2e

# The first commands of a session also wait for consumer groups to settle.
expect.set_options(timeout=30_000)
VIEWPORT = {"width": 1100, "height": 900}
# Marks the document: still there at the end means the page never reloaded.
SAME_DOCUMENT = "window.__sameDocument = true"
STILL_SAME_DOCUMENT = "window.__sameDocument === true"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with headless_chromium() as chromium:
        yield chromium


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


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
    cluster: Cluster, owner: str, balance: str, account_id: str | None = None
) -> str:
    account_id = account_id or new_id(owner.lower())
    async with httpx.AsyncClient(base_url=cluster.command_api, timeout=30) as commands:
        answer = await commands.post(
            "/accounts",
            json={"owner": owner, "initial_balance": balance, "account_id": account_id},
        )
    assert answer.status_code == 201, answer.text
    return account_id


async def transfer_between(
    cluster: Cluster, source: str, target: str, amount: str, description: str
) -> str:
    async with httpx.AsyncClient(base_url=cluster.command_api, timeout=30) as commands:
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
    async with httpx.AsyncClient(base_url=cluster.command_api, timeout=30) as commands:
        answer = await commands.post(f"/accounts/{heidi}/deposits", json={"amount": "2.00"})
    assert answer.status_code == 200, answer.text
    await expect(page.locator("#balance")).to_have_text("€3.00")
    assert await page.evaluate(STILL_SAME_DOCUMENT), "the account page reloaded"


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
