"""The web UI: a login page and three pages (dashboard, account, transfer) that read this API's
JSON, follow its change stream, and send commands to the command API from the browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from bank_query_api.page_headers import PageHeaders, page_headers
from bank_query_api.routes import SettingsDep
from bank_query_api.settings import QueryApiSettings

PAGES = Path(__file__).parent / "web"

# What the pages say for the command API's error codes: next to the form that caused them, in
# plain words. A code missing here falls back to the API's own `message`.
COMMAND_ERRORS = {
    "account_not_found": "There is no such account. Check the account id.",
    "account_already_exists": "An account with this id exists already. Choose another id.",
    "insufficient_funds": "Not enough money in the account for this.",
    "invalid_amount": "That amount is not allowed. Enter more than zero.",
    "same_account": "Choose two different accounts.",
    "transfer_already_exists": "A transfer with this id exists already.",
    "unprocessable_command": "The bank could not process this; nothing changed. Check what"
    " you entered and try again.",
    "validation_error": "Check the form: an amount is euros with at most two decimals,"
    " like 10.50; an id is letters, digits, '-', '_' or '.'.",
    "invalid_json": "The request could not be read. Reload the page and try again.",
    "request_too_large": "That is too much text. Shorten what you typed.",
    "idempotency_key_reused": "This request was already sent with different values.",
    "service_unavailable": "The bank is busy or starting. Try again in a moment.",
    "not_authenticated": "You are not logged in, or your login has expired. Log in again.",
    "teller_only": "Only a teller may do this. Ask a teller at the bank.",
    "unknown_user": 'No one logs in to this bank with that name. Check "Owned by" (a login'
    " such as alice), or leave it empty to own the account yourself.",
    "too_many_requests": "Too many requests in a short time. Wait a minute and try again.",
}
# What the login page says when the command API refuses a username and password (401), and
# why a page sent the browser to it (its `?why=`).
LOGIN_REFUSED = "Wrong username or password. Check both and try again."
LOGIN_NOTES = {
    "login": "Log in to use the bank.",
    "expired": "Your login has expired. Log in again to go on where you were.",
    "logged-out": "You are logged out. Log in again to use the bank.",
}
# A 422 names the fields it refused (`errors[].field`): the page says which, by its label.
FIELD_LABELS = {
    "owner": "Owner",
    "initial_balance": "Opening balance",
    "account_id": "Account id",
    "source_account_id": "From account",
    "target_account_id": "To account",
    "amount": "Amount",
    "description": "Description",
    "owned_by": "Owned by",
}
# ... and for money, what to type instead of the API's words (which speak of JSON strings);
# the rules whole, since a refused "0" or "-5" is not about decimals.
MONEY_HINTS = {
    "amount": "enter more than zero euros, with at most two decimals, like 10.50.",
    "initial_balance": "enter zero or more euros, with at most two decimals, like 10.50.",
}
# How many of an account's latest events its page reads: the chart draws them all, the table
# lists the newest 20. Never more than the API allows (BANK_QUERY_API_MAX_LIMIT).
CHART_EVENTS = 200
# Why a transfer failed (its `reason`), in plain words.
TRANSFER_REASONS = {
    "insufficient_funds": "the source account did not have enough money",
    "source_account_not_found": "the source account does not exist",
    "target_account_not_found": "the target account does not exist",
    "invalid_amount": "the amount was refused",
    "refund_refused": "the refund was refused",
}


def page_config(settings: QueryApiSettings) -> dict[str, Any]:
    """What the pages need to know, sent as /ui/config.js."""
    return {
        "commandApi": settings.command_api_url.rstrip("/"),
        "commandErrors": COMMAND_ERRORS,
        "loginRefused": LOGIN_REFUSED,
        "loginNotes": LOGIN_NOTES,
        "fieldLabels": FIELD_LABELS,
        "moneyHints": MONEY_HINTS,
        "transferReasons": TRANSFER_REASONS,
        "chartEvents": min(CHART_EVENTS, settings.max_limit),
    }


def config_script(settings: QueryApiSettings) -> str:
    return f"window.BANK_CONFIG = {json.dumps(page_config(settings), indent=2)};\n"


router = APIRouter()


# GET /changes, the change stream the pages follow, is in changes.py (it needs a token).


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/login", include_in_schema=False)
async def login_page() -> FileResponse:
    return FileResponse(PAGES / "login.html")


@router.get("/ui/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(PAGES / "dashboard.html")


@router.get("/ui/accounts/{account_id}", include_in_schema=False)
async def account_page(account_id: str) -> FileResponse:
    # The page reads the id from its address and asks the JSON API (404s show there).
    return FileResponse(PAGES / "account.html")


@router.get("/ui/transfers/{transfer_id}", include_in_schema=False)
async def transfer_page(transfer_id: str) -> FileResponse:
    return FileResponse(PAGES / "transfer.html")


@router.get("/ui/config.js", include_in_schema=False)
async def config(settings: SettingsDep) -> Response:
    script = config_script(settings)
    return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-store"})


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=PAGES / "static"), name="ui-static")
    settings: QueryApiSettings = app.state.settings
    headers = page_headers(settings.command_api_url)
    app.add_middleware(PageHeaders, prefix="/ui/", headers=headers)
