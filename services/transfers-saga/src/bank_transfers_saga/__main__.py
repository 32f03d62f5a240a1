"""`python -m bank_transfers_saga`: serve the transfers saga (Kafka consumers + health)."""

from __future__ import annotations

import logging

import uvicorn

from bank_transfers_saga.app import create_app
from bank_transfers_saga.settings import SagaSettings


def main() -> None:
    settings = SagaSettings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info"
    )


if __name__ == "__main__":
    main()
