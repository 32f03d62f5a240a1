"""The one clock the application layer reads (the domain never does: times arrive with
commands and envelopes). Services take it as a parameter, so tests can pass their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
