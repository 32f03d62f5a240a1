"""Messages that cross service boundaries: the envelope, commands, events and outcomes.

Importing the package registers every message type, so any reader of the wire format
(bank_shared.contracts.envelope.open_envelope) knows them all, whichever module it imported.
"""

from bank_shared.contracts import accounts, outcomes, transfers

__all__ = ["accounts", "outcomes", "transfers"]
