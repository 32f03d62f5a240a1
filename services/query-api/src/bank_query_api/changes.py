"""The change stream: server-sent events that tell a page the read model moved, so it re-reads
instead of polling (the projector's NOTIFY on each committed batch, fanned out to browsers).
An event says only that something changed, never what: it carries no bank data, and anyone
logged in may follow it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from bank_query_api.openapi import NOT_AUTHENTICATED, problem
from bank_query_api.problems import ProblemError
from bank_query_api.routes import ReaderDep, SettingsDep
from bank_query_api.slots import Slots
from bank_shared.http.openapi import by_status

# A browser's EventSource reconnects by itself after this many milliseconds.
RECONNECT_MS = 2000
CHANGED = "event: changed\ndata: {}\n\n"
HEARTBEAT = ": heartbeat\n\n"
MEDIA_TYPE = "text/event-stream"


# A stream lasts as long as its page is open, so a slot frees less often than a request's.
RETRY_STREAM = {"Retry-After": "5"}


def too_many_streams(capacity: int) -> ProblemError:
    return ProblemError(
        503,
        "too_many_change_streams",
        f"{capacity} change streams are open on this server, the most it keeps. Retry after"
        " Retry-After seconds, or close the bank's pages you no longer look at.",
        headers=RETRY_STREAM,
    )


TOO_MANY_STREAMS = problem(
    "503 As many change streams are open as this server keeps (retry after `Retry-After` seconds)",
    (
        "too_many_change_streams",
        "100 change streams are open on this server, the most it keeps. Retry after Retry-After"
        " seconds, or close the bank's pages you no longer look at.",
    ),
    retry=True,
)


class ChangeStreams:
    """The open streams: at most `capacity` at once, and all ended when the server stops
    (uvicorn waits for open responses to finish before it shuts down, and a change stream would
    otherwise never finish)."""

    def __init__(self, capacity: int = 100) -> None:
        self.closing = asyncio.Event()
        self.slots = Slots(capacity, too_many_streams)

    def close(self) -> None:
        self.closing.set()


async def change_events(
    next_change: Callable[[], asyncio.Event], closing: asyncio.Event, *, heartbeat: float
) -> AsyncGenerator[str, None]:
    """`changed` after each read model change (changes during one wait count once), a comment
    every `heartbeat` seconds of quiet, until `closing` is set."""
    # Taken before the first yield: a change committed while the client connects still counts.
    change = next_change()
    # Sent at once, so the client knows the stream is open (and refreshes what it shows).
    yield f"retry: {RECONNECT_MS}\n\n"
    while not closing.is_set():
        waits = {
            asyncio.ensure_future(change.wait()),
            asyncio.ensure_future(closing.wait()),
        }
        try:
            await asyncio.wait(waits, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if closing.is_set():
            return
        if change.is_set():
            # The next one is taken before this one is sent: nothing falls in between.
            change = next_change()
            yield CHANGED
        else:
            yield HEARTBEAT


class ChangeStream(StreamingResponse):
    """One open stream, holding its slot until it ends, however it ends: closed by the server,
    the client gone (which cancels the sending), or an error."""

    def __init__(self, events: AsyncGenerator[str, None], slots: Slots) -> None:
        super().__init__(
            events,
            media_type=MEDIA_TYPE,
            # No proxy may buffer or keep it: each event matters the moment it is sent.
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.events = events
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back()
            await self.events.aclose()


router = APIRouter()


@router.get(
    "/changes",
    tags=["live"],
    summary="Follow the read model (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "An endless stream."},
        **by_status(NOT_AUTHENTICATED, TOO_MANY_STREAMS),
    },
)
async def changes(request: Request, reader: ReaderDep, settings: SettingsDep) -> StreamingResponse:
    """An `event: changed` each time the projector commits (read again what you show), a
    comment line every few seconds of quiet. It needs a bearer token, so browsers read it with
    `fetch` (an `EventSource` cannot send one)."""
    streams: ChangeStreams = request.app.state.streams
    streams.slots.take()
    events = change_events(
        reader.changes.next_change, streams.closing, heartbeat=settings.stream_heartbeat
    )
    return ChangeStream(events, streams.slots)
