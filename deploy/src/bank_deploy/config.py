"""Where the launcher keeps its state and which ports it uses, from BANK_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bank_shared.settings import AuthSettings, KafkaSettings, PostgresSettings

REPO_ROOT = Path(__file__).resolve().parents[3]


class LauncherConfig(BaseSettings):
    """Everything the local launcher needs; the service-facing addresses live in `kafka` and `pg`.

    Layout of `state_dir` (documented in docs/running-locally.md):
    `postgres/data`, `kafka/data`, `logs/<name>.log`, `run/<name>.pid`, `auth/` (the login
    material, bank_deploy/credentials.py).
    """

    model_config = SettingsConfigDict(env_prefix="BANK_", extra="ignore")

    state_dir: Path = REPO_ROOT / ".bank"
    # Downloaded jars live outside the work tree: a fresh clone reuses them, git never sees them.
    cache_dir: Path = Path.home() / ".cache" / "bank"

    kafka_version: str = "4.1.1"
    kafka_heap: str = "512m"
    kafka_controller_port: int = 9093
    kafka_start_timeout: float = 120.0

    # Empty means: found on PATH or under /usr/lib/postgresql/<newest>/bin.
    pg_bin_dir: Path | None = None
    # PostgreSQL refuses to run as root; when the launcher is root it runs the server as this user.
    pg_os_user: str = "postgres"

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    pg: PostgresSettings = Field(default_factory=PostgresSettings)

    @field_validator("state_dir", "cache_dir", "pg_bin_dir")
    @classmethod
    def absolute(cls, path: Path | None) -> Path | None:
        # The servers run with other working directories: a relative path would move.
        return path.absolute() if path is not None else None

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def kafka_libs(self) -> Path:
        return self.cache_dir / f"kafka-{self.kafka_version}" / "libs"

    @property
    def auth_dir(self) -> Path:
        return self.state_dir / "auth"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"


def launcher_auth(config: LauncherConfig, env: Mapping[str, str]) -> AuthSettings:
    """The login material the launcher's services read: BANK_AUTH_DIR where the environment
    names one, else `auth/` under the state directory (where `make run` makes it)."""
    named = env.get("BANK_AUTH_DIR")
    return AuthSettings(dir=Path(named).absolute() if named else config.auth_dir)
