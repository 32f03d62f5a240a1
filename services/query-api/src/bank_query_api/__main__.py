"""`python -m bank_query_api`: serve the query API (REST over the read database) and its web UI."""

from __future__ import annotations

import logging
import socket

import uvicorn

from bank_query_api.app import create_app
from bank_query_api.changes import ChangeStreams
from bank_query_api.settings import QueryApiSettings


class QueryApiServer(uvicorn.Server):
    """uvicorn waits for every open response before it stops; open change streams would never
    end, so they are closed first."""

    def __init__(self, config: uvicorn.Config, streams: ChangeStreams) -> None:
        super().__init__(config)
        self.streams = streams

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.streams.close()
        await super().shutdown(sockets)


def main() -> None:
    settings = QueryApiSettings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="info",
        limit_concurrency=settings.http_limit_concurrency,
    )
    QueryApiServer(config, app.state.streams).run()


if __name__ == "__main__":
    main()
