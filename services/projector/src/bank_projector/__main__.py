"""`python -m bank_projector`: serve the projector (Kafka consumers + health endpoints)."""

from __future__ import annotations

import logging

import uvicorn

from bank_projector.app import create_app
from bank_projector.settings import ProjectorSettings


def main() -> None:
    settings = ProjectorSettings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info"
    )


if __name__ == "__main__":
    main()
