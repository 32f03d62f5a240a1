"""The bench starts one process of each service it needs, or as many as BANK_INSTANCES asks,
and leaves no directory behind after a run that went well (a failed one keeps its logs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import bench.cluster as cluster
from bank_deploy.processes import LauncherError
from bench.cluster import bench_counts, running

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


class StartedServices:
    """Stands in for the launcher's services: writes a log where a service would, runs none."""

    def __init__(self, config: Any, **_: object) -> None:
        self.config = config
        self.instances: list[Any] = []

    def start(self) -> None:
        self.config.logs_dir.mkdir(parents=True)
        self.config.log_file("accounts").write_text("started\n")

    def stop(self) -> None:
        pass


@pytest.fixture
def bench_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    async def no_topics(*_: object) -> None:
        pass

    monkeypatch.setenv("BANK_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(cluster, "LocalServices", StartedServices)
    monkeypatch.setattr(cluster, "delete_topics", no_topics)
    return tmp_path


async def test_a_run_that_went_well_leaves_no_directory_behind(bench_state: Path) -> None:
    async with running(NEEDED, {}, "fine"):
        assert (bench_state / "bench-fine" / "logs" / "accounts.log").exists()
    assert not (bench_state / "bench-fine").exists()


async def test_a_failed_run_keeps_its_logs_and_says_where(
    bench_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError, match="step failed"):
        async with running(NEEDED, {}, "broken"):
            raise RuntimeError("step failed")
    assert (bench_state / "bench-broken" / "logs" / "accounts.log").exists()
    assert str(bench_state / "bench-broken" / "logs") in capsys.readouterr().err
