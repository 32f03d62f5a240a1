"""Where tests get Kafka and PostgreSQL: the local launcher, testcontainers, or external servers.

`BANK_TEST_INFRA` chooses: `local` (the launcher `make run` uses), `docker` (testcontainers),
`external` (servers named by the usual BANK_KAFKA_* / BANK_PG_* variables). Unset: `local`, so
the same command uses the same infrastructure whether or not a Docker engine happens to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bank_deploy.cluster import LocalInfra
from bank_deploy.config import REPO_ROOT, LauncherConfig
from bank_deploy.kafka import broker_answers
from bank_deploy.postgres import create_databases
from bank_deploy.processes import LauncherError, is_alive
from bank_shared.settings import KafkaSettings, PostgresSettings

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

PROVIDERS = ("local", "docker", "external")
# Built by `make images` (deploy/docker/images.sh), the images docker-compose.yml runs too.
DOCKER_IMAGES = {"kafka": "bank/kafka", "postgres": "bank/postgres"}
# Marks the containers of test sessions with the session's PID, so a session can remove what a
# killed one left.
TEST_LABEL = "bank.test-infra.pid"

# Test-session defaults: their own state directory and ports, so `make test` can run beside
# a `make run` cluster. Each is overridden by the matching BANK_TEST_* variable.
TEST_DEFAULTS = {
    "BANK_TEST_STATE_DIR": str(REPO_ROOT / ".bank-test"),
    "BANK_TEST_KAFKA_PORT": "19092",
    "BANK_TEST_KAFKA_CONTROLLER_PORT": "19093",
    "BANK_TEST_PG_PORT": "15433",
}


class Broker(Protocol):
    """A Kafka broker a test can stop and start again (a fault of the reliability tests)."""

    def stop(self) -> None: ...

    def start(self) -> None:
        """Returns once the broker answers again."""


@dataclass(frozen=True)
class Endpoints:
    """What a test needs to reach the infrastructure; `broker` where the provider started it."""

    kafka: KafkaSettings
    pg: PostgresSettings
    provider: str
    broker: Broker | None = None


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
            f"BANK_TEST_INFRA={choice!r} is not one of {', '.join(PROVIDERS)}; unset it to use "
            "the local launcher."
        )
    return choice or "local"


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
        yield Endpoints(
            kafka=infra.config.kafka, pg=infra.config.pg, provider="local", broker=infra.kafka
        )
    finally:
        infra.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def docker_infra() -> Iterator[Endpoints]:
    """Kafka and PostgreSQL in containers of the bank's own images (`make images`), through
    testcontainers. The session removes its containers itself, also those a killed session
    left (they carry its label), so testcontainers' reaper, an image of its own that a machine
    without a registry cannot pull, is off unless TESTCONTAINERS_RYUK_DISABLED says otherwise."""
    # testcontainers reads these when it is first imported, which is just below.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    # The engine runs on this machine and publishes ports on 127.0.0.1. Where the tests run in a
    # container themselves (a CI sandbox), testcontainers would look for them elsewhere.
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer

    require_images(*DOCKER_IMAGES.values())
    remove_containers_left_behind()
    labels = {TEST_LABEL: str(os.getpid())}
    pg_settings = PostgresSettings()
    kafka_port = free_port()
    # Kafka tells clients the address to use; it must be the host port, fixed before start.
    kafka = (
        DockerContainer(DOCKER_IMAGES["kafka"])
        .with_bind_ports(9092, kafka_port)
        .with_env(
            "KAFKA_ADVERTISED_LISTENERS",
            f"INTERNAL://localhost:29092,EXTERNAL://127.0.0.1:{kafka_port}",
        )
        .with_kwargs(labels=labels)
    )
    postgres = PostgresContainer(
        DOCKER_IMAGES["postgres"],
        username=pg_settings.user,
        password=pg_settings.password,
        dbname="postgres",
    ).with_kwargs(labels=labels)
    with kafka, postgres:
        endpoint = KafkaSettings(host="127.0.0.1", port=kafka_port)
        broker = ContainerKafka(kafka, endpoint)
        broker.wait_ready()  # as the launcher's Kafka: until an idempotent producer can start
        pg = PostgresSettings(
            host=postgres.get_container_host_ip(),
            port=int(postgres.get_exposed_port(5432)),
        )
        asyncio.run(create_databases(pg))
        yield Endpoints(kafka=endpoint, pg=pg, provider="docker", broker=broker)


@dataclass(frozen=True)
class ContainerKafka:
    """The broker of a test container, stopped (SIGTERM: a controlled shutdown) and started
    again with its data and its host port."""

    container: DockerContainer
    kafka: KafkaSettings
    start_timeout: float = 120

    def stop(self) -> None:
        self.container.get_wrapped_container().stop(timeout=45)

    def start(self) -> None:
        self.container.get_wrapped_container().start()
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not asyncio.run(broker_answers(self.kafka)):
            if time.monotonic() > deadline:
                raise LauncherError(
                    f"The Kafka container did not answer within {self.start_timeout:.0f}s; "
                    "`docker logs` on it says why."
                )
            time.sleep(0.25)


def require_images(*images: str) -> None:
    if not docker_engine_answers():
        raise LauncherError(
            "BANK_TEST_INFRA=docker needs a Docker engine and none answers: `make docker-engine` "
            "starts Debian's (as root), or start yours, or unset BANK_TEST_INFRA."
        )
    for image in images:
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
        if found.returncode != 0:
            raise LauncherError(f"The image {image} is missing: `make images` builds it.")


def remove_containers_left_behind() -> None:
    """The containers of test sessions whose process is gone (killed before removing them);
    a session that still runs keeps its own."""
    each = '{{.ID}} {{.Label "%s"}}' % TEST_LABEL  # noqa: UP031 (a Go template of braces)
    listed = subprocess.run(
        ["docker", "ps", "--all", "--filter", f"label={TEST_LABEL}", "--format", each],
        capture_output=True,
        text=True,
        check=True,
    )
    orphans = [
        container
        for container, pid in (line.split() for line in listed.stdout.splitlines())
        if not is_alive(int(pid))
    ]
    if orphans:
        subprocess.run(["docker", "rm", "--force", "--volumes", *orphans], check=True)


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
