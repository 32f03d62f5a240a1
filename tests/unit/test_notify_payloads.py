"""The projector's NOTIFY payloads: finished transfer ids, split below PostgreSQL's limit."""

from __future__ import annotations

from bank_shared.channels import MAX_NOTIFY_PAYLOAD, notify_payloads


def test_no_ids_make_one_empty_payload() -> None:
    assert notify_payloads([]) == [""]


def test_a_few_ids_fit_in_one_comma_separated_payload() -> None:
    assert notify_payloads(["t-1", "t-2", "t-3"]) == ["t-1,t-2,t-3"]


def test_many_ids_are_split_below_the_limit_and_none_is_lost_or_cut() -> None:
    ids = [f"transfer-{i:06d}-{'x' * 30}" for i in range(1000)]
    payloads = notify_payloads(ids)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_NOTIFY_PAYLOAD for p in payloads)
    assert [i for p in payloads for i in p.split(",")] == ids
