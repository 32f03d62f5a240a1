"""`python -m tests.relay_process`: one outbox relay as a process of its own, for the tests that
pause one with SIGSTOP. Set by BANK_TEST_RELAY_DSN, BANK_TEST_RELAY_LEASE_KEY and
BANK_TEST_RELAY_LEASE_DURATION (and BANK_KAFKA_*); with BANK_TEST_RELAY_PAUSE_AT=fetched it
stops itself the first time it holds rows it read and has not sent, until it gets SIGCONT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from bank_shared.eventstore.relay import OutboxRelay
from bank_shared.settings import KafkaSettings, RelaySettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    pause_at = os.environ.get("BANK_TEST_RELAY_PAUSE_AT")
    paused = False

    async def pause_once(point: str) -> None:
        nonlocal paused
        if point == pause_at and not paused:
            paused = True
            os.kill(os.getpid(), signal.SIGSTOP)

    settings = RelaySettings(
        lease_key=int(os.environ["BANK_TEST_RELAY_LEASE_KEY"]),
        lease_duration=float(os.environ["BANK_TEST_RELAY_LEASE_DURATION"]),
        poll_interval=0.2,
    )
    relay = OutboxRelay(
        os.environ["BANK_TEST_RELAY_DSN"],
        KafkaSettings(),
        settings,
        name=f"test-relay-{os.getpid()}",
        fault=pause_once if pause_at else None,
    )
    asyncio.run(relay.run())


if __name__ == "__main__":
    main()
