"""The local infrastructure as one unit: PostgreSQL and Kafka, started and stopped in order."""

from __future__ import annotations

from dataclasses import dataclass, field

from bank_deploy.config import LauncherConfig
from bank_deploy.kafka import LocalKafka
from bank_deploy.postgres import LocalPostgres


@dataclass
class LocalInfra:
    config: LauncherConfig = field(default_factory=LauncherConfig)

    def __post_init__(self) -> None:
        self.postgres = LocalPostgres(self.config)
        self.kafka = LocalKafka(self.config)

    def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        try:
            self.kafka.start()
        except BaseException:
            self.postgres.stop()
            raise

    def stop(self) -> None:
        # Kafka first: nothing new arrives while PostgreSQL shuts down.
        try:
            self.kafka.stop()
        finally:
            self.postgres.stop()

    def status(self) -> dict[str, int | None]:
        return {
            "postgres": self.postgres.pid() if self.postgres.running() else None,
            "kafka": self.kafka.pid(),
        }

    def addresses(self) -> dict[str, str]:
        return {"postgres": self.postgres.address(), "kafka": self.kafka.address()}
