"""A single-node Apache Kafka broker (KRaft) from the official jars on Maven Central."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bank_deploy.config import REPO_ROOT, LauncherConfig
from bank_deploy.processes import LauncherError, exit_status, running_pid, spawn, stop_pid, tail
from bank_shared.settings import KafkaSettings

POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
BROKER_DEFAULTS = REPO_ROOT / "deploy" / "kafka" / "broker.properties"
JAVA_HINT = (
    "Install Java 17 or newer (Debian/Ubuntu: `sudo apt-get install openjdk-17-jre-headless`)."
)
MAVEN_HINT = (
    "Install Maven (Debian/Ubuntu: `sudo apt-get install maven`); it fetches the Kafka jars."
)

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""


def server_properties(config: LauncherConfig, data_dir: Path) -> str:
    host, port = config.kafka.host, config.kafka.port
    controller = config.kafka_controller_port
    return f"""\
# Written by bank_deploy.kafka at each start; edit LauncherConfig / BANK_* variables instead.
# A static voter set (not --standalone): the controller port can change between runs.
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
{BROKER_DEFAULTS.read_text()}"""


def java_major_version(java: str) -> int:
    output = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output.stderr + output.stdout)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


class LocalKafka:
    """Fetches the jars once, formats the KRaft storage once, starts and stops the broker."""

    name = "kafka"

    def __init__(self, config: LauncherConfig) -> None:
        self.config = config
        self.data_dir = config.kafka_dir / "data"
        self.pid_file = config.pid_file(self.name)
        self.log_path = config.log_file(self.name)

    def java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise LauncherError(f"`java` not found on PATH. {JAVA_HINT}")
        if java_major_version(java) < 17:
            raise LauncherError(f"Kafka 4 needs Java 17 or newer; {java} is older. {JAVA_HINT}")
        return java

    def ensure_jars(self) -> Path:
        libs = self.config.kafka_libs
        marker = libs / ".complete"
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LauncherError(f"`mvn` not found on PATH. {MAVEN_HINT}")
        libs.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                f"-Dkafka.version={self.config.kafka_version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            raise LauncherError(
                f"Fetching Apache Kafka {self.config.kafka_version} from Maven Central failed:\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}\n"
                "Check that Maven Central is reachable and BANK_KAFKA_VERSION names a release."
            )
        marker.touch()
        return libs

    def _java_argv(self, main: str, *args: str) -> list[str]:
        libs = self.ensure_jars()
        return [
            self.java(),
            f"-Xms{min_heap(self.config.kafka_heap)}",
            f"-Xmx{self.config.kafka_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.config.kafka_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        self.config.kafka_dir.mkdir(parents=True, exist_ok=True)
        (self.config.kafka_dir / "log4j2.properties").write_text(LOG4J2)
        properties = self.config.kafka_dir / "server.properties"
        properties.write_text(server_properties(self.config, self.data_dir))
        return properties

    def _format_storage(self, properties: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        result = subprocess.run(
            self._java_argv(
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                # One argument, not two: a random id may start with "-" and pass for an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(properties),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise LauncherError(f"Formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def pid(self) -> int | None:
        return running_pid(self.pid_file, expect="kafka.Kafka")

    def start(self) -> None:
        if self.pid() is not None:
            self.wait_ready()
            return
        properties = self._write_config()
        self._format_storage(properties)
        try:
            self.wait_ready(self._spawn(properties))
        except SilentExitError as silent:
            # Seen once in a CI run: the JVM gone before it wrote a single line, so nothing of
            # Kafka had started (no port bound, no log segment touched) and a second start is safe.
            # A Kafka that fails for a reason of its own logs it, and is not started again.
            print(
                f"Kafka stopped before writing a line ({silent.status}); starting it once more.",
                file=sys.stderr,
                flush=True,
            )
            self.wait_ready(self._spawn(properties))

    def _spawn(self, properties: Path) -> Started:
        log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
        process = spawn(
            self._java_argv("kafka.Kafka", str(properties)),
            pid_file=self.pid_file,
            log_file=self.log_path,
            env=os.environ,
        )
        return Started(process, log_size)

    def wait_ready(self, started: Started | None = None) -> None:
        """Until the broker answers (`broker_answers`). `started` is the broker we just
        started, if we did: its exit status explains a failure."""
        deadline = time.monotonic() + self.config.kafka_start_timeout
        while True:
            # A broker we just started is asked through its own handle, not its PID file.
            if started is not None and started.process.poll() is not None:
                if self.log_path.stat().st_size == started.log_size:
                    raise SilentExitError(exit_status(started.process))
                raise LauncherError(
                    f"Kafka exited during start ({exit_status(started.process)})."
                    f" Its log ({self.log_path}):\n{tail(self.log_path)}"
                )
            if started is None and self.pid() is None:
                raise LauncherError(
                    f"Kafka exited during start. Its log ({self.log_path}):\n{tail(self.log_path)}"
                )
            if asyncio.run(broker_answers(self.config.kafka)):
                return
            if time.monotonic() > deadline:
                raise LauncherError(
                    f"Kafka did not become ready within {self.config.kafka_start_timeout:.0f}s "
                    f"(raise BANK_KAFKA_START_TIMEOUT on a slow machine). Log ({self.log_path}):\n"
                    f"{tail(self.log_path)}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            # SIGTERM runs Kafka's controlled shutdown; its logs are flushed, no recovery next time.
            stop_pid(pid, grace_seconds=45, name="kafka")
        self.pid_file.unlink(missing_ok=True)

    def address(self) -> str:
        return self.config.kafka.bootstrap


async def broker_answers(kafka: KafkaSettings) -> bool:
    """Ready means an idempotent producer can start: metadata and producer ids are served."""
    try:
        # A plain TCP probe first, so the client does not log a refused connection per try.
        _, writer = await asyncio.open_connection(kafka.host, kafka.port)
        writer.close()
    except OSError:
        return False
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, enable_idempotence=True, request_timeout_ms=5000
    )
    try:
        await producer.start()
    except (KafkaError, OSError):
        return False
    else:
        return True
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await producer.stop()


@dataclass(frozen=True)
class Started:
    process: subprocess.Popen[bytes]
    log_size: int  # before the start: what the broker wrote is past it


class SilentExitError(LauncherError):
    """The broker we started died without writing to its log."""

    def __init__(self, status: str) -> None:
        super().__init__(
            f"Kafka exited during start ({status}) without writing to its log. If it happens "
            "again, check that nothing stops Java processes here and that memory is free "
            "(`free -h`; BANK_KAFKA_HEAP sets Kafka's heap)."
        )
        self.status = status


def min_heap(heap: str) -> str:
    """Start with half of the maximum heap (at least 128m) so idle Kafka stays small."""
    match = re.fullmatch(r"(\d+)([mMgG])", heap)
    if not match:
        return heap
    megabytes = int(match.group(1)) * (1024 if match.group(2) in "gG" else 1)
    return f"{max(128, megabytes // 2)}m"
