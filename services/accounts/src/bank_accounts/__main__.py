"""`python -m bank_accounts`: serve the accounts service (Kafka consumer + health endpoints)."""

from __future__ import annotations

import logging

import uvicorn

from bank_accounts.app import create_app
from bank_accounts.settings import AccountsSettings


def main() -> None:
    settings = AccountsSettings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info"
    )


if __name__ == "__main__":
    main()
