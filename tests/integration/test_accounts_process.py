"""The accounts service as a real process: it starts, reports ready, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx
import pytest

from bank_deploy.providers import Endpoints, free_port
from bank_shared.topics import TopicSettings
from tests.support import eventually

pytestmark = pytest.mark.integration


async def test_the_service_process_answers_health_and_ready_and_stops_cleanly(
    infra: Endpoints, topics: TopicSettings
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BANK_ACCOUNTS_HTTP_PORT": str(port),
        "BANK_ACCOUNTS_CONSUMER_GROUP": f"process-test-{port}",
        "BANK_KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap,
        "BANK_PG_HOST": infra.pg.host,
        "BANK_PG_PORT": str(infra.pg.port),
        **{f"BANK_TOPIC_{name.upper()}": str(value) for name, value in topics},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bank_accounts",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/ready")).status_code == 200
                except httpx.TransportError:
                    return process.returncode is not None  # stop waiting if it died

            await eventually(ready, within=60, what="accounts /ready")
            assert process.returncode is None, "the service exited during start"
            assert (await client.get("/health")).json() == {"status": "ok"}
            body = (await client.get("/ready")).json()
            assert body["checks"]["postgres"] == "ok"
            assert body["checks"]["kafka"] == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            process.kill()
            raise
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete, hence -SIGTERM.
    text = output.decode()
    assert process.returncode in (0, -signal.SIGTERM), text[-3000:]
    assert "Application shutdown complete" in text
