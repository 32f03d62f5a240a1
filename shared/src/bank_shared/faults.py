"""Named crash points for fault-injection tests: a process started with
BANK_FAULT_POINTS="name,other" kills itself with SIGKILL when it reaches one of them.

They mark the moments a real crash hurts most (after a decision, before its commit), so a
test can land exactly there instead of hoping a timed kill does. Unset, they cost one set
lookup.
"""

from __future__ import annotations

import os
import signal

ACTIVE = frozenset(p.strip() for p in os.environ.get("BANK_FAULT_POINTS", "").split(",") if p)


def crash_point(name: str) -> None:
    if name in ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
