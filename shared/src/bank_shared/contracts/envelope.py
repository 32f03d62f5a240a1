"""The envelope every Kafka message travels in, and the registry that maps its type to a model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from bank_shared.contracts.actors import BANK_TELLER, Actor
from bank_shared.contracts.upcasting import MissingUpcasterError, upcast
from bank_shared.ids import derived_id


class Message(BaseModel):
    """Base of every command, event and outcome: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The payload shape this code reads and writes. An older payload is upcast to it
    # (upcasting.py); one with no chain to it, or a newer one, is refused rather than misread.
    SCHEMA_VERSION: ClassVar[int] = 1

    # The wire name; the class name unless a subclass sets it.
    @classmethod
    def message_type(cls) -> str:
        return cls.__name__


class Envelope(BaseModel):
    """Who, when and why around a payload. Events also say their place: `stream_*`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: UUID
    correlation_id: UUID
    causation_id: UUID | None = None
    occurred_at: AwareDatetime
    type: str
    schema_version: int = 1
    stream_id: str | None = None
    stream_version: int | None = None
    # A command's return address: the topic its outcome goes to (None: the command API's).
    reply_to: str | None = None
    # A command's sender, as authenticated by the command API (None: sent before envelopes
    # named one; `sender` reads it as the bank's teller).
    actor: Actor | None = None
    payload: dict[str, Any]

    @property
    def sender(self) -> Actor:
        return self.actor or BANK_TELLER


M = TypeVar("M", bound=Message)

REGISTRY: dict[str, type[Message]] = {}


def register(cls: type[M]) -> type[M]:
    """Class decorator: make a message type parseable from the wire."""
    REGISTRY[cls.message_type()] = cls
    return cls


def current_versions() -> dict[str, int]:
    """Each registered type's schema version, as this code writes it."""
    return {name: model.SCHEMA_VERSION for name, model in REGISTRY.items()}


class UnreadableMessageError(ValueError):
    """Bytes that are not a message we understand; the text says why (dead-letter reason)."""


def seal(
    message: Message,
    *,
    message_id: UUID,
    correlation_id: UUID,
    causation_id: UUID | None,
    occurred_at: datetime,
    stream_id: str | None = None,
    stream_version: int | None = None,
    reply_to: str | None = None,
    actor: Actor | None = None,
) -> Envelope:
    return Envelope(
        message_id=message_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        occurred_at=occurred_at,
        type=message.message_type(),
        schema_version=message.SCHEMA_VERSION,
        stream_id=stream_id,
        stream_version=stream_version,
        reply_to=reply_to,
        actor=actor,
        payload=message.model_dump(mode="json"),
    )


def seal_events(
    events: Sequence[Message],
    *,
    cause: UUID,
    correlation_id: UUID,
    stream_id: str,
    after_version: int,
    occurred_at: datetime,
) -> list[Envelope]:
    """Envelopes for new events of one stream, numbered from `after_version + 1`.

    Event ids derive from the cause (a command or an answer) and the position, so deciding the
    same cause again yields the same ids.
    """
    return [
        seal(
            event,
            message_id=derived_id(cause, "event", i),
            correlation_id=correlation_id,
            causation_id=cause,
            occurred_at=occurred_at,
            stream_id=stream_id,
            stream_version=after_version + i,
        )
        for i, event in enumerate(events, start=1)
    ]


def open_envelope(raw: bytes | None) -> tuple[Envelope, Message]:
    """Parse wire bytes into the envelope and its typed payload, or raise UnreadableMessageError."""
    if raw is None:
        raise UnreadableMessageError("empty record (no value)")
    try:
        envelope = Envelope.model_validate_json(raw)
    except ValidationError as error:
        raise UnreadableMessageError(f"not a message envelope: {error}") from None
    return envelope, read_payload(envelope)


def read_payload(envelope: Envelope) -> Message:
    """The typed payload of an envelope, upcast to the current version, or
    UnreadableMessageError."""
    model = REGISTRY.get(envelope.type)
    if model is None:
        raise UnreadableMessageError(f"unknown message type {envelope.type!r}")
    payload = envelope.payload
    if envelope.schema_version != model.SCHEMA_VERSION:
        try:
            payload = upcast(envelope.type, envelope.schema_version, model.SCHEMA_VERSION, payload)
        except MissingUpcasterError as error:
            raise UnreadableMessageError(str(error)) from None
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise UnreadableMessageError(f"invalid {envelope.type} payload: {error}") from None


# Fields a message may lack, added after the envelope's first version.
OPTIONAL_FIELDS = ("reply_to", "actor")


def to_json(envelope: Envelope) -> str:
    """The wire form. An optional field that is None is left out: a message without it is
    written as before the field existed, so a consumer not yet upgraded (whose envelope
    forbids unknown fields) still reads it, and an answer stored before is sent again byte
    for byte."""
    unset = {name for name in OPTIONAL_FIELDS if getattr(envelope, name) is None}
    return envelope.model_dump_json(exclude=unset or None)


def to_bytes(envelope: Envelope) -> bytes:
    return to_json(envelope).encode()
