"""`python -m bank_query_api`: serve the query API (REST over the read database)."""

from __future__ import annotations

import logging

import uvicorn

from bank_query_api.app import create_app
from bank_query_api.settings import QueryApiSettings


def main() -> None:
    settings = QueryApiSettings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info"
    )


if __name__ == "__main__":
    main()
