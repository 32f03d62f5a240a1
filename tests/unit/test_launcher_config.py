"""The launcher's pure parts: generated broker config, heap sizing, provider choice, where the
services find their login material."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from bank_deploy import services as services_module
from bank_deploy.credentials import demo_passwords
from bank_deploy.kafka import LocalKafka, min_heap, server_properties
from bank_deploy.processes import LauncherError
from bank_deploy.providers import chosen_provider, free_port, launcher_config_for_tests
from bank_deploy.services import LocalServices
from bank_shared.settings import AuthSettings, KafkaSettings


def test_broker_config_is_single_node_kraft_with_replication_factor_one() -> None:
    config = launcher_config_for_tests(
        kafka=KafkaSettings(host="127.0.0.1", port=29092), kafka_controller_port=29093
    )
    properties = dict(
        line.split("=", 1)
        for line in server_properties(config, Path("/data")).splitlines()
        if line and not line.startswith("#")
    )
    assert properties["process.roles"] == "broker,controller"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert properties["log.dirs"] == "/data"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert properties[key] == "1"


@pytest.mark.parametrize(
    ("heap", "expected"), [("512m", "256m"), ("1g", "512m"), ("200m", "128m"), ("odd", "odd")]
)
def test_initial_heap_is_half_the_maximum_but_at_least_128m(heap: str, expected: str) -> None:
    assert min_heap(heap) == expected


def test_unknown_provider_is_refused_with_the_valid_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANK_TEST_INFRA", "podman")
    with pytest.raises(LauncherError, match="local, docker, external"):
        chosen_provider()


def test_provider_is_named_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANK_TEST_INFRA", "External")
    assert chosen_provider() == "external"


def test_without_a_choice_the_tests_use_the_local_launcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BANK_TEST_INFRA", raising=False)
    assert chosen_provider() == "local"


def test_storage_format_passes_the_cluster_id_as_one_argument(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Kafka's argument parser reads an id starting with "-" as an option; 1 in 64 random ids
    does, so the id must travel glued to its flag."""
    seen: list[list[str]] = []

    def fake_run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(bytes=b"\xfb" + b"\x00" * 15))
    kafka = LocalKafka(launcher_config_for_tests(state_dir=tmp_path))
    monkeypatch.setattr(kafka, "_java_argv", lambda main, *args: [main, *args])

    kafka._format_storage(tmp_path / "server.properties")

    [argv] = seen
    assert "--cluster-id=-wAAAAAAAAAAAAAAAAAAAA" in argv


def test_a_broker_that_dies_without_a_word_is_started_once_more_and_a_loud_failure_is_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Stand-ins for the JVM (`sh`, named like the broker): the first is killed before it writes
    anything and is started again; the second fails saying why, and that reaches the user with
    its exit status instead of a third start."""
    kafka = LocalKafka(
        launcher_config_for_tests(
            state_dir=tmp_path, kafka=KafkaSettings(port=free_port(), bootstrap_servers="")
        )
    )
    started: list[str] = []

    def stand_in(main: str, *args: str) -> list[str]:
        started.append(main)
        if len(started) == 1:
            return ["sh", "-c", "sleep 0.3; kill -KILL $$", main]
        return ["sh", "-c", "sleep 0.3; echo 'Address already in use'; exit 1", main]

    monkeypatch.setattr(kafka, "_java_argv", stand_in)
    monkeypatch.setattr(kafka, "_format_storage", lambda properties: None)

    with pytest.raises(LauncherError) as failure:
        kafka.start()

    assert started == ["kafka.Kafka", "kafka.Kafka"]
    assert "(exit code 1)" in str(failure.value)
    assert "Address already in use" in str(failure.value)


def test_a_service_that_dies_while_starting_is_told_with_its_exit_status(tmp_path: Path) -> None:
    """Its own process handle says it died, whatever its PID file says."""
    nobody_listens = {"BANK_ACCOUNTS_HTTP_PORT": str(free_port())}
    services = LocalServices(launcher_config_for_tests(state_dir=tmp_path), env=nobody_listens)
    accounts = services.named("accounts")[0]
    dying = subprocess.Popen(["sh", "-c", "exit 3"])

    with pytest.raises(LauncherError, match=r"accounts exited during start \(exit code 3\)"):
        services.wait_ready(accounts, dying, timeout=30)


@pytest.mark.parametrize("named", [False, True])
def test_the_services_start_with_the_login_material_made_where_they_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: bool
) -> None:
    """Under the state directory, or where BANK_AUTH_DIR says; made before the first start,
    readable only by its owner but for the public key."""
    spawned: list[dict[str, str]] = []

    def spawn(argv: list[str], *, env: dict[str, str], **_: object) -> None:
        spawned.append(env)

    monkeypatch.setattr(services_module, "spawn", spawn)
    monkeypatch.setattr(LocalServices, "wait_ready", lambda *_: None)
    where = tmp_path / "elsewhere" if named else tmp_path / "state" / "auth"
    env = {"BANK_AUTH_DIR": str(where)} if named else {}
    services = LocalServices(launcher_config_for_tests(state_dir=tmp_path / "state"), env=env)

    services.start()

    assert len(spawned) == len(services.instances)
    assert {env["BANK_AUTH_DIR"] for env in spawned} == {str(where)}
    auth = AuthSettings(dir=where)
    for private in (auth.signing_key_file, auth.users_file, auth.logins_file):
        assert private.stat().st_mode & 0o777 == 0o600
    assert auth.verifying_key_file.stat().st_mode & 0o777 == 0o644
    assert set(demo_passwords(auth)) == {"teller", "alice", "bob"}
