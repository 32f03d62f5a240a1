"""The relay's lease, by its own clock: valid until its duration after the renewal was sent,
renewed every third of it, and given up on refusal."""

from __future__ import annotations

from bank_shared.eventstore.lease import RelayLease


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Database:
    """Answers a claim with a term, or with nothing (another relay holds the lease)."""

    def __init__(self, term: int | None) -> None:
        self.term = term
        self.released = False

    async def fetchval(self, _sql: str, *_args: object) -> int | None:
        return self.term

    async def execute(self, _sql: str, *_args: object) -> str:
        self.released = True
        return "UPDATE 1"


async def test_a_lease_is_valid_for_its_duration_from_when_the_claim_was_sent() -> None:
    clock = Clock()
    lease = RelayLease(1, duration=3.0, clock=clock)
    assert not lease.valid
    assert await lease.claim(Database(term=1))  # type: ignore[arg-type]
    clock.now += 0.9
    assert (lease.valid, lease.renewal_due()) == (True, False)
    clock.now += 0.2
    assert (lease.valid, lease.renewal_due()) == (True, True)
    clock.now += 1.9  # 3.0 s after the claim: over, whatever the database says
    assert not lease.valid


async def test_a_refused_renewal_ends_the_lease_at_once() -> None:
    clock = Clock()
    lease = RelayLease(1, duration=3.0, clock=clock)
    assert await lease.claim(Database(term=4))  # type: ignore[arg-type]
    assert lease.term == 4
    assert not await lease.claim(Database(term=None))  # type: ignore[arg-type]
    assert not lease.valid
    assert lease.term is None


async def test_a_release_ends_the_lease_here_and_in_the_database() -> None:
    lease = RelayLease(1, duration=3.0, clock=Clock())
    database = Database(term=1)
    assert await lease.claim(database)  # type: ignore[arg-type]
    await lease.release(database)  # type: ignore[arg-type]
    assert database.released
    assert not lease.valid
