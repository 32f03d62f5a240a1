"""The bench starts one process of each service it needs, or as many as BANK_INSTANCES asks."""

from __future__ import annotations

import pytest

from bank_deploy.processes import LauncherError
from bench.cluster import bench_counts

NEEDED = {"accounts", "transfers-saga", "projector", "command-api"}


def test_one_process_of_each_needed_service_and_none_of_the_others() -> None:
    assert bench_counts(NEEDED, {}) == {
        "accounts": 1,
        "transfers-saga": 1,
        "projector": 1,
        "command-api": 1,
        "query-api": 0,
    }


def test_bank_instances_starts_more_of_a_needed_service_only() -> None:
    counts = bench_counts(NEEDED, {"BANK_INSTANCES": "accounts=2,transfers-saga=3,query-api=2"})
    assert counts["accounts"] == 2
    assert counts["transfers-saga"] == 3
    assert counts["projector"] == 1
    assert counts["query-api"] == 0  # the bench does not need it


def test_a_malformed_bank_instances_is_refused_with_what_to_write() -> None:
    with pytest.raises(LauncherError, match="is not <service>=<count>"):
        bench_counts(NEEDED, {"BANK_INSTANCES": "accounts:2"})
