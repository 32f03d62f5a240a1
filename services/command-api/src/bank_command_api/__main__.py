"""`python -m bank_command_api`: serve the command API (REST + outcome consumer)."""

from __future__ import annotations

import logging

import uvicorn

from bank_command_api.app import create_app
from bank_command_api.settings import CommandApiSettings


def main() -> None:
    settings = CommandApiSettings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info"
    )


if __name__ == "__main__":
    main()
