"""PostgreSQL NOTIFY channels that more than one service uses."""

from __future__ import annotations

from collections.abc import Sequence

# The projector notifies it in every batch transaction that changed the read model; the query
# API listens to answer `min_version` reads (read-your-writes) as soon as the row is there.
# The payload names the transfers that finished (completed or failed) in the batch, comma
# separated, so a watcher of transfers (the benchmark) needs no query to learn it; it is empty
# when none did, and a batch that finished many sends several notifications.
READ_MODEL_CHANNEL = "bank_read_model"
# PostgreSQL refuses payloads of 8000 bytes or more.
MAX_NOTIFY_PAYLOAD = 7900


def notify_payloads(ids: Sequence[str]) -> list[str]:
    """`ids` joined by commas into as few payloads as fit (one empty payload for none)."""
    payloads, current = [], ""
    for item in ids:
        if current and len(current) + 1 + len(item) > MAX_NOTIFY_PAYLOAD:
            payloads.append(current)
            current = ""
        current = f"{current},{item}" if current else item
    payloads.append(current)
    return payloads
