"""The change stream: server-sent events that tell a page the read model moved, so it re-reads
instead of polling (the projector's NOTIFY on each committed batch, fanned out to browsers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

# A browser's EventSource reconnects by itself after this many milliseconds.
RECONNECT_MS = 2000
CHANGED = "event: changed\ndata: {}\n\n"
HEARTBEAT = ": heartbeat\n\n"
MEDIA_TYPE = "text/event-stream"


class ChangeStreams:
    """Ends every open stream when the server stops: uvicorn waits for open responses to finish
    before it shuts down, and a change stream would otherwise never finish."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()

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
