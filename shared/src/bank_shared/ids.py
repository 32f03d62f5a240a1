"""Identifiers: account and transfer ids are short readable strings; message ids are UUIDs."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import StringConstraints

# Letters, digits, "-", "_" and "."; up to 64 characters (a UUID fits, so does "alice").
StreamName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$", strict=True)
]

# Fixed namespace for ids derived from other ids (uuid5): the same inputs give the same id,
# which is what makes a retried step harmless downstream.
DERIVED_ID_NAMESPACE = uuid.UUID("6f1c1b0e-8a55-4cf3-9a57-3f2f3f0b9a11")


def derived_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(DERIVED_ID_NAMESPACE, "/".join(str(p) for p in parts))
