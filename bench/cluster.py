"""The services a benchmark needs, as processes of their own, through the local launcher."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient

from bank_deploy.config import LauncherConfig, launcher_auth
from bank_deploy.services import SERVICES, LocalServices, instance_counts
from bank_shared.settings import AuthSettings, KafkaSettings


@dataclass(frozen=True)
class Running:
    """The processes by instance name (`accounts`, `accounts-2`, ...), and the login material
    they read (the teller's password is in it)."""

    pids: dict[str, int | None]
    auth: AuthSettings


@contextlib.asynccontextmanager
async def running(
    names: set[str],
    env: Mapping[str, str],
    run: str,
) -> AsyncIterator[Running]:
    """Start the named services (PIDs, logs and login material under `.bank/bench-<run>/`),
    wait until each answers /ready, yield them, and stop them at the end, then delete the run's
    topics (`bench.<run>.*`). The run's directory goes too, unless the run failed: then its
    logs are what explains it, and stderr names them."""
    config = LauncherConfig()
    config = config.model_copy(update={"state_dir": config.state_dir / f"bench-{run}"})
    services = LocalServices(config, counts=bench_counts(names, env), env=env)
    failed = False
    try:
        await asyncio.to_thread(services.start)
        pids = {i.name: services.pid(i) for i in services.instances}
        yield Running(pids, launcher_auth(config, env))
    except BaseException:
        failed = True
        print(f"the services' logs of this run are kept in {config.logs_dir}", file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(services.stop)
        await delete_topics(KafkaSettings(), f"bench.{run}.")
        if not failed:
            # A directory of logs per run piled up (5 MB each, hundreds after a week of runs).
            shutil.rmtree(config.state_dir, ignore_errors=True)


def bench_counts(names: set[str], env: Mapping[str, str]) -> dict[str, int]:
    """One process of each named service, or as many as `BANK_INSTANCES` asks for (as with
    `make start`); none of the others."""
    wanted = instance_counts(env.get("BANK_INSTANCES", ""))
    return {
        service.name: wanted[service.name] if service.name in names else 0 for service in SERVICES
    }


async def delete_topics(kafka: KafkaSettings, prefix: str) -> None:
    """Every run makes fresh topics; left behind, they pile up in the broker (1,642 partitions
    after a day of runs), and a broker with more partitions is slower for the next run."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
