"""Idempotency-Key: one key of one subject stands for one command, and only for the request that
created it, for 24 hours."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from bank_shared.db import Connection

# Printable ASCII without spaces, like the keys clients generate (UUIDs, ULIDs, hashes).
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
# After this a key is forgotten: its next use is a new request. Expired keys are deleted
# (`purge_expired_keys`), and one not yet deleted is taken over by its next use.
KEY_LIFETIME = timedelta(hours=24)


class IdempotencyKeyReusedError(Exception):
    """The key was first used for a different request."""


class IdempotencyKeyInUseError(Exception):
    """Another transaction (another instance's write) holds the key and has not committed."""


@dataclass(frozen=True)
class IdempotencyKey:
    subject: str
    key: str
    fingerprint: str

    @property
    def name(self) -> tuple[str, str]:
        """What identifies it: the same key of two subjects is two keys."""
        return (self.subject, self.key)


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    """What makes two requests "the same": method, path and the validated body, so
    `"10.5"` and `"10.50"` or a different key order do not count as a different request."""
    canonical = json.dumps(
        {"method": method.upper(), "path": path, "body": body},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim_keys(
    conn: Connection, claims: Sequence[tuple[IdempotencyKey, UUID]]
) -> list[UUID | Exception | None]:
    """Bind each key to its command in the caller's transaction. One answer per claim, in
    order: None when the key was new (or expired) and now stands for the claim's command; the
    command it already stood for; or an error for that claim alone (IdempotencyKeyReusedError
    when the key stood for a different request). A key claimed twice here is bound by its
    first claim, and the second is answered as a repetition of it.

    A concurrent first use of a key holds its row: ON CONFLICT waits for that transaction, and
    the next statement sees the row once it committed (READ COMMITTED). The keys are inserted
    in sorted order, and each transaction claims once, so a transaction only ever waits for a
    key that sorts after every key it holds: no cycle of waits, no deadlock.
    """
    first: dict[tuple[str, str], tuple[IdempotencyKey, UUID]] = {}
    for key, command_id in claims:
        first.setdefault(key.name, (key, command_id))
    bound = [first[name] for name in sorted(first)]
    inserted = await conn.fetch(
        "INSERT INTO idempotency_keys (subject, key, fingerprint, command_id)"
        " SELECT s, k, f, c FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[])"
        " WITH ORDINALITY AS claim(s, k, f, c, n) ORDER BY n"
        " ON CONFLICT (subject, key) DO UPDATE SET fingerprint = excluded.fingerprint,"
        " command_id = excluded.command_id, created_at = now()"
        " WHERE idempotency_keys.created_at < now() - $5::interval"
        " RETURNING subject, key",
        [key.subject for key, _ in bound],
        [key.key for key, _ in bound],
        [key.fingerprint for key, _ in bound],
        [command_id for _, command_id in bound],
        KEY_LIFETIME,
    )
    new = {(row["subject"], row["key"]) for row in inserted}
    # What the keys bound earlier stand for (a second statement: it sees the rows of the
    # transactions the INSERT waited for).
    stored: dict[tuple[str, str], tuple[str, UUID]] = {
        name: (key.fingerprint, command_id)
        for name, (key, command_id) in first.items()
        if name in new
    }
    used_before = [name for name in first if name not in new]
    if used_before:
        rows = await conn.fetch(
            "SELECT subject, key, fingerprint, command_id FROM idempotency_keys"
            " WHERE (subject, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [subject for subject, _ in used_before],
            [key for _, key in used_before],
        )
        stored.update(
            ((row["subject"], row["key"]), (row["fingerprint"], row["command_id"])) for row in rows
        )
    answers: list[UUID | Exception | None] = []
    for key, command_id in claims:
        if key.name not in stored:  # only if a row was purged in between
            answers.append(RuntimeError(f"idempotency key {key.key!r} vanished while claimed"))
            continue
        fingerprint_stored, bound_to = stored[key.name]
        if bound_to == command_id:
            answers.append(None)
        elif fingerprint_stored != key.fingerprint:
            answers.append(IdempotencyKeyReusedError(key.key))
        else:
            answers.append(bound_to)
    return answers


async def purge_expired_keys(conn: Connection) -> int:
    """Delete the keys older than KEY_LIFETIME; return how many."""
    status: str = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval", KEY_LIFETIME
    )
    return int(status.split()[-1])
