"""The query API's caps and scoping, in parts: slots refuse past their capacity and come back
however their holder ends, a customer's transfer filter and view, and an app that needs only
the public key."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bank_query_api.app import create_app
from bank_query_api.changes import too_many_streams
from bank_query_api.queries import TransferFilter, transfer_seen_by
from bank_query_api.routes import too_many_waiters
from bank_query_api.settings import QueryApiSettings
from bank_query_api.slots import Slots
from bank_shared.auth.tokens import TokenVerifier
from bank_shared.contracts.actors import BANK_TELLER, Actor
from bank_shared.http.problems import ProblemError
from bank_shared.settings import AuthSettings
from tests.logins import AUTH, token

CAROL = Actor(subject="carol", role="customer")


def test_slots_refuse_past_their_capacity_and_free_when_given_back() -> None:
    slots = Slots(2, too_many_waiters)
    slots.take()
    slots.take()
    with pytest.raises(ProblemError) as refused:
        slots.take()
    assert (refused.value.status, refused.value.code) == (503, "too_many_waiters")
    assert refused.value.headers == {"Retry-After": "1"}
    assert "2 requests" in refused.value.message
    slots.give_back()
    slots.take()
    assert slots.in_use == 2


def test_a_held_slot_comes_back_when_its_holder_fails() -> None:
    slots = Slots(1, too_many_streams)
    with pytest.raises(RuntimeError), slots.held():
        raise RuntimeError("the wait failed")
    assert slots.in_use == 0
    with slots.held():
        with pytest.raises(ProblemError) as refused:
            slots.take()
        assert refused.value.code == "too_many_change_streams"
        assert refused.value.headers == {"Retry-After": "5"}


def test_the_caps_have_defaults_and_settings() -> None:
    settings = QueryApiSettings()
    assert (settings.max_change_streams, settings.max_version_waiters) == (100, 200)
    assert QueryApiSettings(command_api_url="https://bank.test/").token_url == (
        "https://bank.test/token"
    )


def test_a_customer_s_filter_keeps_their_accounts_transfers_with_placeholders_only() -> None:
    where, arguments = TransferFilter(status="failed", visible_to="carol").where()
    mine = "ARRAY(SELECT account_id FROM accounts WHERE owned_by = $2)"
    assert where == (
        "WHERE status = $1"
        f" AND (source_account_id = ANY({mine}) OR target_account_id = ANY({mine}))"
    )
    assert arguments == ["failed", "carol"]


def test_a_customer_sees_the_other_side_s_account_but_not_who_holds_it() -> None:
    row = {
        "transfer_id": "t-1",
        "source_account_id": "c-1",
        "target_account_id": "d-1",
        "amount": "5",
        "description": None,
        "status": "completed",
        "reason": None,
        "refunded": False,
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "debited_at": None,
        "finished_at": None,
        "source_owner": "Carol",
        "target_owner": "Dave",
        "source_owned_by": "carol",
        "target_owned_by": "dave",
    }
    as_carol = transfer_seen_by(CAROL, row)
    assert (as_carol.target_account_id, as_carol.source_owner, as_carol.target_owner) == (
        "d-1",
        "Carol",
        None,
    )
    as_teller = transfer_seen_by(BANK_TELLER, row)
    assert (as_teller.source_owner, as_teller.target_owner) == ("Carol", "Dave")


def test_the_app_needs_only_the_public_key(tmp_path: Path) -> None:
    shutil.copy(AUTH.verifying_key_file, tmp_path / AUTH.verifying_key_file.name)
    app = create_app(QueryApiSettings(auth=AuthSettings(dir=tmp_path)))
    tokens: TokenVerifier = app.state.tokens
    assert tokens.verify(token("carol", "customer")) == CAROL
