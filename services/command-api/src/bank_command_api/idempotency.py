"""Idempotency-Key: one key stands for one command, and only for the request that created it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from bank_shared.db import Connection

# Printable ASCII without spaces, like the keys clients generate (UUIDs, ULIDs, hashes).
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


class IdempotencyKeyReusedError(Exception):
    """The key was first used for a different request."""


@dataclass(frozen=True)
class IdempotencyKey:
    key: str
    fingerprint: str


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    """What makes two requests "the same": method, path and the validated body, so
    `"10.5"` and `"10.50"` or a different key order do not count as a different request."""
    canonical = json.dumps(
        {"method": method.upper(), "path": path, "body": body},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(conn: Connection, key: IdempotencyKey, command_id: UUID) -> UUID | None:
    """Bind `key` to `command_id` in the caller's transaction. Returns None when the key is
    new, else the command it already stands for; raises when it stood for another request.

    A concurrent first use of the same key holds the row: ON CONFLICT waits for that
    transaction, and the next statement sees its row once it committed (READ COMMITTED).
    """
    inserted = await conn.fetchval(
        "INSERT INTO idempotency_keys (key, fingerprint, command_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (key) DO NOTHING RETURNING command_id",
        key.key,
        key.fingerprint,
        command_id,
    )
    if inserted is not None:
        return None
    row = await conn.fetchrow(
        "SELECT fingerprint, command_id FROM idempotency_keys WHERE key = $1", key.key
    )
    if row is None:  # only if the row vanished between the two statements; never deleted today
        raise RuntimeError(f"idempotency key {key.key!r} disappeared while being claimed")
    if row["fingerprint"] != key.fingerprint:
        raise IdempotencyKeyReusedError(key.key)
    earlier: UUID = row["command_id"]
    return earlier
