"""The services a benchmark needs, as processes of their own, through the local launcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from bank_deploy.config import LauncherConfig
from bank_deploy.services import SERVICES, LocalServices


@contextlib.asynccontextmanager
async def running(
    names: set[str], env: Mapping[str, str], run: str
) -> AsyncIterator[dict[str, int | None]]:
    """Start one process of each named service (PIDs and logs under `.bank/bench-<run>/`),
    wait until each answers /ready, yield their PIDs by name, and stop them at the end."""
    config = LauncherConfig()
    config = config.model_copy(update={"state_dir": config.state_dir / f"bench-{run}"})
    counts = {service.name: int(service.name in names) for service in SERVICES}
    services = LocalServices(config, counts=counts, env=env)
    try:
        await asyncio.to_thread(services.start)
        yield {i.name: services.pid(i) for i in services.instances}
    finally:
        await asyncio.to_thread(services.stop)
