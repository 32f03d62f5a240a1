"""Who sent a command: the authenticated subject and their role, carried in the envelope."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

Role = Literal["customer", "teller"]

# A login name: what a token's `sub` holds and what an account's `owned_by` names.
Subject = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]

# Who owns what was written before accounts had owners, and who sent the commands written
# before envelopes named a sender: the bank's own teller (docs/security.md).
TELLER = "teller"


class Actor(BaseModel):
    """The subject a command acts for. Set by the command API from a verified token (never
    from a request body), and by the saga from the transfer it moves money for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: Subject
    role: Role

    @property
    def is_teller(self) -> bool:
        return self.role == "teller"

    def may_act_on(self, owned_by: str | None) -> bool:
        """Tellers act on every account; customers on their own (None: an owner not known,
        so no customer's)."""
        return self.is_teller or (owned_by is not None and self.subject == owned_by)


BANK_TELLER = Actor(subject=TELLER, role="teller")
