"""The bank keeps every guarantee of docs/ARCHITECTURE.md ("Guarantees") while its processes
die: a short run of the Jepsen-style workload (`make chaos` runs a long one)."""

from __future__ import annotations

import os

import pytest

from bank_deploy.providers import Endpoints
from tests.reliability.workload import run_workload

pytestmark = pytest.mark.reliability


async def test_money_is_conserved_and_nothing_is_lost_or_doubled_under_faults(
    infra: Endpoints,
) -> None:
    report = await run_workload(
        infra,
        duration=float(os.environ.get("BANK_CHAOS_DURATION", "75")),
        seed=int(os.environ.get("BANK_CHAOS_SEED", "1")),
    )
    print(report.summary())
    assert report.violations == []
    assert report.converged_after is not None
    # What the rotation puts first (workload.faults): a kill of each writer, a paused consumer,
    # a broker restart. Counted by kind, not in total: how many more fit in the run depends
    # on how fast the machine restarts them.
    kinds = {fault.removesuffix("-2") for fault in report.faults}
    assert {"sigkill accounts", "sigkill transfers-saga"} <= kinds, report.faults
    assert any(k.startswith("sigstop") for k in kinds), report.faults
    if infra.broker is not None:  # the local launcher's broker, or a test container
        assert "restart kafka" in kinds, report.faults
    assert report.outcomes["completed"] > 0
    assert any(k.startswith("failed:") for k in report.outcomes)
