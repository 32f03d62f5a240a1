"""The local launcher: a second, private cluster started and stopped leaves nothing behind."""

from __future__ import annotations

import shutil
import socket
import uuid

import pytest

from bank_deploy.cluster import LocalInfra
from bank_deploy.config import REPO_ROOT
from bank_deploy.postgres import find_bin_dir
from bank_deploy.processes import LauncherError, is_alive
from bank_deploy.providers import free_port, launcher_config_for_tests, local_infra
from bank_shared.settings import KafkaSettings, PostgresSettings

pytestmark = pytest.mark.integration


def launcher_prerequisites_missing() -> str | None:
    if shutil.which("java") is None:
        return "java is not installed"
    try:
        find_bin_dir(None)
    except LauncherError:
        return "PostgreSQL server binaries are not installed"
    return None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(
    launcher_prerequisites_missing() is not None,
    reason=f"the local launcher cannot run here: {launcher_prerequisites_missing()}",
)
def test_a_session_starts_without_earlier_topics_and_stops_leaving_no_process() -> None:
    kafka_port, controller_port, pg_port = free_port(), free_port(), free_port()
    # Not pytest's tmp_path: that is private to root, and PostgreSQL runs as another user.
    state_dir = REPO_ROOT / ".bank-test" / f"launcher-{uuid.uuid4().hex[:8]}"
    config = launcher_config_for_tests(
        state_dir=state_dir,
        kafka_controller_port=controller_port,
        kafka=KafkaSettings(port=kafka_port, bootstrap_servers=""),
        pg=PostgresSettings(port=pg_port),
    )
    infra = LocalInfra(config)
    # A topic an earlier test session left: a session's broker starts without it.
    earlier = infra.kafka.data_dir / "test.earlier-session-0"
    earlier.mkdir(parents=True)
    try:
        with local_infra(config):
            pids = infra.status()
            assert all(pid is not None for pid in pids.values()), pids
            assert port_open(kafka_port)
            assert port_open(pg_port)
            assert not earlier.exists()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)

    assert [pid for pid in pids.values() if pid is not None and is_alive(pid)] == []
    assert not port_open(kafka_port)
    assert not port_open(controller_port)
    assert not port_open(pg_port)
    assert infra.status() == {"postgres": None, "kafka": None}
