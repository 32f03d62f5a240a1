"""Where tests get Kafka and PostgreSQL: the local launcher, testcontainers, or external servers.

`BANK_TEST_INFRA` chooses: `local` (the launcher `make run` uses), `docker` (testcontainers),
`external` (servers named by the usual BANK_KAFKA_* / BANK_PG_* variables). Unset: `docker` when
a Docker engine answers, `local` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bank_deploy.cluster import LocalInfra
from bank_deploy.config import REPO_ROOT, LauncherConfig
from bank_deploy.postgres import create_databases
from bank_deploy.processes import LauncherError
from bank_shared.settings import KafkaSettings, PostgresSettings

PROVIDERS = ("local", "docker", "external")
LISTENER_PROTOCOLS = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"

# Test-session defaults: their own state directory and ports, so `make test` can run beside
# a `make run` cluster. Each is overridden by the matching BANK_TEST_* variable.
TEST_DEFAULTS = {
    "BANK_TEST_STATE_DIR": str(REPO_ROOT / ".bank-test"),
    "BANK_TEST_KAFKA_PORT": "19092",
    "BANK_TEST_KAFKA_CONTROLLER_PORT": "19093",
    "BANK_TEST_PG_PORT": "15433",
}


@dataclass(frozen=True)
class Endpoints:
    """What a test needs to reach the infrastructure."""

    kafka: KafkaSettings
    pg: PostgresSettings
    provider: str


def docker_engine_answers() -> bool:
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def chosen_provider() -> str:
    choice = os.environ.get("BANK_TEST_INFRA", "").strip().lower()
    if choice and choice not in PROVIDERS:
        raise LauncherError(
            f"BANK_TEST_INFRA={choice!r} is not one of {', '.join(PROVIDERS)}; unset it to choose "
            "automatically (docker when a Docker engine answers, else the local launcher)."
        )
    return choice or ("docker" if docker_engine_answers() else "local")


def launcher_config_for_tests(**overrides: object) -> LauncherConfig:
    def setting(name: str) -> str:
        return os.environ.get(name, TEST_DEFAULTS[name])

    values: dict[str, object] = {
        "state_dir": Path(setting("BANK_TEST_STATE_DIR")),
        "kafka_controller_port": int(setting("BANK_TEST_KAFKA_CONTROLLER_PORT")),
        "kafka": KafkaSettings(port=int(setting("BANK_TEST_KAFKA_PORT")), bootstrap_servers=""),
        "pg": PostgresSettings(port=int(setting("BANK_TEST_PG_PORT"))),
    }
    values.update(overrides)
    return LauncherConfig(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def local_infra(config: LauncherConfig | None = None) -> Iterator[Endpoints]:
    infra = LocalInfra(config or launcher_config_for_tests())
    if infra.kafka.pid() is None:
        # Every session makes topics of its own. A broker that kept those of every earlier
        # session took longer to start each time, and past the start timeout when a test
        # restarted it on a busy machine.
        shutil.rmtree(infra.kafka.data_dir, ignore_errors=True)
    infra.start()
    try:
        yield Endpoints(kafka=infra.config.kafka, pg=infra.config.pg, provider="local")
    finally:
        infra.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def docker_infra() -> Iterator[Endpoints]:
    """The official apache/kafka and postgres images through testcontainers."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    pg_settings = PostgresSettings()
    kafka_port = free_port()
    # Kafka tells clients the address to use; it must be the host port, fixed before start.
    kafka = (
        DockerContainer(f"apache/kafka:{LauncherConfig().kafka_version}")
        .with_bind_ports(9092, kafka_port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{kafka_port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", LISTENER_PROTOCOLS)
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    postgres = PostgresContainer(
        "postgres:17-alpine",
        username=pg_settings.user,
        password=pg_settings.password,
        dbname="postgres",
    )
    with kafka, postgres:
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        pg = PostgresSettings(
            host=postgres.get_container_host_ip(),
            port=int(postgres.get_exposed_port(5432)),
        )
        asyncio.run(create_databases(pg))
        yield Endpoints(
            kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{kafka_port}"),
            pg=pg,
            provider="docker",
        )


@contextlib.contextmanager
def external_infra() -> Iterator[Endpoints]:
    pg = PostgresSettings()
    asyncio.run(create_databases(pg))
    yield Endpoints(kafka=KafkaSettings(), pg=pg, provider="external")


@contextlib.contextmanager
def provide_infra(provider: str | None = None) -> Iterator[Endpoints]:
    """Start (or reach) Kafka and PostgreSQL for one test session; stop what it started."""
    provider = provider or chosen_provider()
    factory = {"local": local_infra, "docker": docker_infra, "external": external_infra}[provider]
    with factory() as endpoints:
        yield endpoints
