"""The five bank services as local processes: start, wait until /ready, restart one, stop.

Each service instance runs `python -m <module>` with its own port; its PID file is
`<state>/run/<name>.pid` and its log `<state>/logs/<name>.log` (a second instance of a service
is `<name>-2`). The login material is made before the first start, under `<state>/auth` unless
BANK_AUTH_DIR names another place. Everything else comes from the BANK_* environment, as the
services read it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bank_deploy.config import LauncherConfig, launcher_auth
from bank_deploy.credentials import ensure_credentials
from bank_deploy.processes import LauncherError, exit_status, running_pid, spawn, stop_pid, tail


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port_variable: str
    port: int

    def instance(self, number: int, env: Mapping[str, str]) -> ServiceInstance:
        """Instance 1 keeps the service's port; others take the ones 100, 200... above it."""
        name = self.name if number == 1 else f"{self.name}-{number}"
        port = int(env.get(self.port_variable, self.port)) + (number - 1) * 100
        return ServiceInstance(self, name, port)


# Start order matters only for the first start on an empty Kafka (each creates the topics it
# needs, so any order works); readers come last so the URLs printed are ready to use.
SERVICES = (
    Service("accounts", "bank_accounts", "BANK_ACCOUNTS_HTTP_PORT", 8011),
    Service("transfers-saga", "bank_transfers_saga", "BANK_SAGA_HTTP_PORT", 8012),
    Service("projector", "bank_projector", "BANK_PROJECTOR_HTTP_PORT", 8013),
    Service("command-api", "bank_command_api", "BANK_COMMAND_API_HTTP_PORT", 8001),
    Service("query-api", "bank_query_api", "BANK_QUERY_API_HTTP_PORT", 8002),
)
BY_NAME = {s.name: s for s in SERVICES}


@dataclass(frozen=True)
class ServiceInstance:
    service: Service
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def instance_counts(spec: str) -> dict[str, int]:
    """`BANK_INSTANCES="accounts=2,transfers-saga=2"`: more than one process of a service
    (they share its consumer groups; Kafka spreads the partitions among them)."""
    counts = {s.name: 1 for s in SERVICES}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        if name not in BY_NAME or not count.isdigit() or int(count) < 1:
            raise LauncherError(
                f"BANK_INSTANCES item {item!r} is not <service>=<count>; services are "
                f"{', '.join(BY_NAME)}"
            )
        counts[name] = int(count)
    return counts


class LocalServices:
    def __init__(
        self,
        config: LauncherConfig,
        counts: dict[str, int] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        # What the services read: BANK_* addresses, ports, topics (the caller's by default).
        self.env = dict(env if env is not None else os.environ)
        # The token keys and users the command API loads, the verifying key the others use.
        self.auth = launcher_auth(config, self.env)
        # `make start` remembers how many instances it started, so `make status` and
        # `make stop` find them without being told again.
        self.remembered = config.run_dir / "instances"
        spec = self.env.get("BANK_INSTANCES")
        if spec is None and self.remembered.exists():
            spec = self.remembered.read_text()
        counts = counts or instance_counts(spec or "")
        self.instances = [
            s.instance(n, self.env) for s in SERVICES for n in range(1, counts.get(s.name, 1) + 1)
        ]

    def named(self, name: str) -> list[ServiceInstance]:
        found = [i for i in self.instances if name in (i.name, i.service.name)]
        if not found:
            raise LauncherError(
                f"no service called {name!r}; choose one of "
                f"{', '.join(i.name for i in self.instances)}"
            )
        return found

    def pid(self, instance: ServiceInstance) -> int | None:
        return running_pid(self.config.pid_file(instance.name), expect=instance.service.module)

    def start(self, instances: Iterable[ServiceInstance] | None = None) -> None:
        chosen = list(instances or self.instances)
        self.remembered.parent.mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        for instance in self.instances:
            counts[instance.service.name] = counts.get(instance.service.name, 0) + 1
        self.remembered.write_text(",".join(f"{name}={n}" for name, n in counts.items()))
        ensure_credentials(self.auth)
        started: dict[str, subprocess.Popen[bytes]] = {}
        for instance in chosen:
            if self.pid(instance) is None:
                env = {
                    **self.env,
                    instance.service.port_variable: str(instance.port),
                    "BANK_AUTH_DIR": str(self.auth.dir),
                    "PYTHONUNBUFFERED": "1",
                }
                started[instance.name] = spawn(
                    [sys.executable, "-m", instance.service.module],
                    pid_file=self.config.pid_file(instance.name),
                    log_file=self.config.log_file(instance.name),
                    env=env,
                )
        for instance in chosen:
            self.wait_ready(instance, started.get(instance.name))

    def wait_ready(
        self,
        instance: ServiceInstance,
        process: subprocess.Popen[bytes] | None = None,
        timeout: float = 120,
    ) -> None:
        """Until its /ready answers. `process`, if we just started it, is asked whether it
        still runs (its own handle, not the PID file), and tells how it ended."""
        deadline = time.monotonic() + timeout
        while not self.ready(instance):
            log = self.config.log_file(instance.name)
            if process is not None and process.poll() is not None:
                raise LauncherError(
                    f"{instance.name} exited during start ({exit_status(process)})."
                    f" Its log ({log}):\n{tail(log)}"
                )
            if process is None and self.pid(instance) is None:
                raise LauncherError(
                    f"{instance.name} exited during start. Its log ({log}):\n{tail(log)}"
                )
            if time.monotonic() > deadline:
                raise LauncherError(
                    f"{instance.name} not ready after {timeout:.0f}s; its log ({log}):\n{tail(log)}"
                )
            time.sleep(0.2)

    @staticmethod
    def ready(instance: ServiceInstance) -> bool:
        try:
            with urllib.request.urlopen(f"{instance.url}/ready", timeout=2) as answer:  # noqa: S310 (a fixed local http URL)
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, instances: Iterable[ServiceInstance] | None = None) -> None:
        # Readers first, then the writers: nothing half-done is asked of a stopped service.
        for instance in reversed(list(instances or self.instances)):
            pid = self.pid(instance)
            if pid is not None:
                stop_pid(pid, grace_seconds=30, name=instance.name)
            self.config.pid_file(instance.name).unlink(missing_ok=True)

    def restart(self, name: str) -> None:
        chosen = self.named(name)
        self.stop(chosen)
        self.start(chosen)
