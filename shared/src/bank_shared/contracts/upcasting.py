"""Events that change: every message type has a schema version, and a chain of upcasters
brings a payload stored or sent at an older version up to the one this code reads.

An upcaster is a pure function from the payload of version N to the payload of version N + 1,
registered next to the message it upgrades:

    @upcaster("MoneyDeposited", 1)
    def deposit_gets_a_description(payload: Payload) -> Payload:
        return {**payload, "description": None}

`upcast` runs the chain; `read_payload` (envelope.py) calls it, so every reader of events gets
it: an aggregate's load, the projector (live and in a rebuild) and every Kafka consumer. A
stored event is never rewritten: the chain runs each time it is read, which keeps the history
exactly as it was written. `unreadable_versions` is the check a service runs at start-up on the
versions in its store, so that a missing upcaster stops it at once instead of at the first
read of an old event (`check_stored_versions` in eventstore/store.py runs it, with the
versions this code writes, `current_versions` in envelope.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

# (type, version N) -> the function that turns a payload of version N into version N + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(message_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Decorator: register `function` as the step from `from_version` to `from_version + 1`."""

    def register(function: Upcaster) -> Upcaster:
        key = (message_type, from_version)
        if key in UPCASTERS:
            raise ValueError(f"{message_type} v{from_version} already has an upcaster")
        UPCASTERS[key] = function
        return function

    return register


class MissingUpcasterError(ValueError):
    """No chain from a payload's version to the current one; the text names the missing step."""


def upcast(message_type: str, version: int, current: int, payload: Payload) -> Payload:
    """`payload`, written at `version`, brought to `current` one step at a time."""
    problem = _problem(message_type, version, current)
    if problem is not None:
        raise MissingUpcasterError(problem)
    while version < current:
        payload = UPCASTERS[(message_type, version)](payload)
        version += 1
    return payload


def unreadable_versions(pairs: Iterable[tuple[str, int]], current: Mapping[str, int]) -> list[str]:
    """For each (type, version) found in a store, why this code cannot read it, if it cannot:
    an unknown type, a version newer than this code, or a missing step in the chain."""
    problems = []
    for message_type, version in sorted(set(pairs)):
        if message_type not in current:
            problems.append(f"{message_type} is a type this code does not know")
            continue
        problem = _problem(message_type, version, current[message_type])
        if problem is not None:
            problems.append(problem)
    return problems


def _problem(message_type: str, version: int, current: int) -> str | None:
    if version > current:
        return (
            f"{message_type} schema version {version} was written by newer code (this code"
            f" reads up to {current}): deploy that version of this service"
        )
    for step in range(version, current):
        if (message_type, step) not in UPCASTERS:
            return (
                f"no upcaster from {message_type} schema version {step} to {step + 1}: register"
                f' one with @upcaster("{message_type}", {step}) next to the message'
            )
    return None
