"""The command API as a real process: it starts, answers a command over HTTP, stops on SIGTERM."""

from __future__ import annotations

import signal
import uuid

import httpx
import pytest

from bank_deploy.providers import Endpoints, free_port
from bank_shared.service import Platform
from bank_shared.topics import TopicSettings
from tests.logins import bearer
from tests.support import ServiceProcess, new_id, service_env

pytestmark = pytest.mark.integration


async def test_the_process_opens_an_account_and_stops_cleanly(
    infra: Endpoints, topics: TopicSettings, accounts: Platform
) -> None:
    port = free_port()
    env = {
        **service_env(infra.kafka, infra.pg, topics),
        "BANK_COMMAND_API_HTTP_PORT": str(port),
        "BANK_COMMAND_API_CONSUMER_GROUP": f"command-api-process-{uuid.uuid4().hex[:8]}",
        "BANK_COMMAND_API_RELAY_POLL_INTERVAL": "0.2",
        "BANK_COMMAND_API_DECISION_TIMEOUT": "30",
    }
    service = await ServiceProcess("bank_command_api", env, port).start()
    try:
        await service.wait_ready()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=bearer(), timeout=40
        ) as client:
            account = new_id("proc")
            opened = await client.post(
                "/accounts", json={"owner": "Proc", "initial_balance": "1", "account_id": account}
            )
            assert opened.status_code == 201, opened.text
            assert (opened.json()["account_id"], opened.json()["balance"]) == (account, "1.00")
            ready = (await client.get("/ready")).json()
            assert ready["checks"] == {"postgres": "ok", "kafka": "ok"}
    finally:
        await service.stop()
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete, hence -SIGTERM.
    output = await service.output()
    assert service.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
