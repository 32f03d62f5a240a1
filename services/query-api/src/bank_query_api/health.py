"""`/health`: the process answers; `/ready`: the read database answers and holds the read model."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bank_query_api.queries import Pool, missing_tables
from bank_query_api.schemas import Health, Readiness

# A readiness probe must answer quickly even when the database does not.
CHECK_TIMEOUT = 2.0


async def readiness(pool: Pool) -> dict[str, str]:
    """Each dependency's state: "ok" or what is wrong with it."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            missing = await missing_tables(pool)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return {
            "postgres": f"unreachable: {error or type(error).__name__}",
            "read_model": "unknown",
        }
    read_model = "ok"
    if missing:
        read_model = f"missing tables {', '.join(missing)}; the projector creates them at start"
    return {"postgres": "ok", "read_model": read_model}


def health_routes() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/health",
        summary="The process is alive",
        response_model=Health,
        response_description="Always `ok` while the process runs.",
    )
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="PostgreSQL answers and the read model exists",
        response_model=Readiness,
        response_description="Ready: every check is `ok`.",
        responses={
            503: {
                "model": Readiness,
                "description": "Starting, or a dependency is not there; `checks` says which.",
                "content": {
                    "application/json": {
                        "example": {
                            "status": "not_ready",
                            "checks": {
                                "postgres": "ok",
                                "read_model": "missing tables accounts; the projector creates"
                                " them at start",
                            },
                        }
                    }
                },
            }
        },
    )
    async def ready(request: Request) -> JSONResponse:
        pool: Pool | None = request.app.state.reader.started_pool
        if pool is None:
            return JSONResponse({"status": "starting", "checks": {}}, status_code=503)
        checks = await readiness(pool)
        healthy = all(state == "ok" for state in checks.values())
        body: dict[str, Any] = {"status": "ready" if healthy else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if healthy else 503)

    return router
