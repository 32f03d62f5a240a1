"""The outbox relay: publishes committed outbox rows to Kafka, in order, at least once.

Two ways rows reach it. The writers of its own process hand their rows over right after their
commit, and it sends them as handed, without reading them back (handover.py says when it may:
once every commit before theirs is accounted for). Everything else it reads from the outbox.
Both go through the one producer, one round at a time, so the rules below hold for both.

Order: rows are read in id order, or taken in the order their commits were heard of (NOTIFY,
delivered in commit order), and sent through one idempotent producer (`acks=all`); a stream's
rows are committed in version order (the next version can only be appended after the previous
one is visible), so a stream's messages reach Kafka in version order. A round's rows
for one partition travel as one record batch, which the broker appends whole or not at all,
and the idempotent producer keeps it from landing twice across its retries; the next round
starts only when every batch of this one is acknowledged. So a later message of a stream is
never written without the earlier ones. If any send of a round fails, nothing of the round is
marked published: the relay starts over with a new producer from the first unpublished row,
which repeats the rows that did land, in order.

No Kafka transactions: they cost three broker round trips and a marker write per round, and a
round started while the previous one's markers are still being written is refused and backed
off (CONCURRENT_TRANSACTIONS), which measured as 3 ms median and 24 ms p90 per round against
0.4 ms for a plain idempotent send (docs/performance-journal.md, change 1). What they bought, hiding
a failed round, is covered by the rules above and by the consumers, who all drop a message they
have seen (by message id, or a stream version they already applied), whichever copy comes
first.

Only one relay per database publishes at a time: the holder of a lease it renews (lease.py);
the others wait on standby and take over once it expires, at most `lease_duration` after the
leader's last renewal (plus a `poll_interval`), or at once after a clean stop. A leader checks
its lease before every round's send, so one that wakes from a pause finds it over and sends
nothing it had read. What that check cannot see is a pause in the instant between it and
aiokafka writing the round to its socket: a round sent then lands after the new leader's
rows. It only repeats rows the new leader sends too, which every consumer drops (by message
id, or by a version it applied); only Kafka transactions could fence it at the broker, and
they cost a round about 25 ms when rounds follow each other (docs/ARCHITECTURE.md).

At least once: a row is marked published only after Kafka acknowledged it, so a crash between
commit and publish, or between publish and marking, publishes it (again) after the restart
(handed-over rows too: they are in the outbox, unmarked, and a new leadership reads first).
The marks are written by the next read, in the same statement, or by one UPDATE every
MARK_DELAY (sooner once a batch's worth waits): not a PostgreSQL round trip and a commit per
round. A crash before that write only means more rows sent again.

Batching: once woken, the relay waits `linger` (10 ms) before its round, so that rows committed
(or handed over) meanwhile go with it. Without it, a busy bank sent a round per transaction, and
every later hop (a Kafka fetch, a consumer's batch and its statements) paid per transaction too;
Kafka's own producer has waited 5 ms by default since 4.0 for the same reason (`linger.ms`,
KIP-1030). 10 rather than 5 ms: less CPU per transfer in all comparisons but one
(docs/performance-journal.md, changes 23 and 24); handed-over rows linger too (change 31: without it
they cost more CPU, and the bank's latency rose). It lingers only while it sends at least
`linger_min_rate` rows a second: below that a linger rarely catches another commit and is only
delay, so a quiet bank does not wait (change 25). Rows, not commits, measure the load: the
linger batches commits downstream (a consumer's batch is one transaction), and a version that
counted commits cost CPU under the load the linger is meant for. Only *when* a round starts
changes, so none of the rules above does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from bank_shared.db import KEEPALIVES, Connection
from bank_shared.eventstore.handover import Handovers
from bank_shared.eventstore.lease import RelayLease
from bank_shared.eventstore.store import OUTBOX_CHANNEL, QueuedRow
from bank_shared.settings import KafkaSettings

log = logging.getLogger(__name__)

# The producer's own partitioner (murmur2 of the key), so a key lands where send() puts it.
_PARTITIONER = DefaultPartitioner()

# Tests inject faults at named points ("fetched", "sent") to stop the relay mid-way.
FaultHook = Callable[[str], Awaitable[None]]


# How long acknowledged rows may wait for the next round to mark them before they are marked
# on their own (while they wait, each round's read leaves them out).
MARK_DELAY = 0.05
# How long a NOTIFY of this process's writers waits for its rows before the relay reads them
# from the outbox instead (handover.py): a writer hands them over at once after its commit, so
# only one cancelled in between (or an event loop stalled this long) makes it wait.
HANDOVER_WAIT = 0.5
MARK = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"


@dataclass(frozen=True)
class RelaySettings:
    # Names the lease in its database (one outbox per database: one lease).
    lease_key: int
    # A leader that has not renewed its lease for this long loses it (lease.py).
    lease_duration: float = 5.0
    batch_size: int = 500
    poll_interval: float = 1.0
    # Seconds a woken relay waits for more rows before its round (0: none). The price is this
    # much latency on every hop while it lingers; docs/performance-journal.md (changes 23 to 25)
    # has the measurements.
    linger: float = 0.010
    # ... but only once it sends at least this many rows a second (0: always). Below that, a
    # linger rarely catches another commit: it is pure delay (change 25).
    linger_min_rate: float = 200.0
    retention: timedelta = timedelta(days=1)
    purge_every: float = 60.0


class RecentRows:
    """How many rows the relay sent lately: in the last whole second, or so far in this one if
    that is more (a burst counts at once, a lull only after a second). Rows, not commits or
    rounds: those fall as the linger batches them, rows do not."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._second = int(clock())
        self._now = 0
        self._before = 0

    def add(self, rows: int) -> None:
        self._roll()
        self._now += rows

    def per_second(self) -> int:
        self._roll()
        return max(self._before, self._now)

    def _roll(self) -> None:
        second = int(self._clock())
        if second != self._second:
            self._before = self._now if second == self._second + 1 else 0
            self._now = 0
            self._second = second


class LeadershipLostError(Exception):
    """The relay's lease is over (it paused, or a renewal failed): it must send nothing more."""


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        kafka: KafkaSettings,
        settings: RelaySettings,
        *,
        name: str,
        fault: FaultHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` (seconds) counts the rows sent a second, which decide the linger."""
        self.dsn = dsn
        self.kafka = kafka
        self.name = name
        self.settings = settings
        self.fault = fault
        self.is_leader = False
        self._wake = asyncio.Event()
        self._sent = RecentRows(clock)
        # Tokens this relay's writers NOTIFY with; another relay (process) has another prefix.
        self._prefix = f"{uuid.uuid4().hex[:12]}-"
        self._tokens = itertools.count()
        self._handovers = Handovers(self._prefix, HANDOVER_WAIT)
        self.lease = RelayLease(settings.lease_key, settings.lease_duration)

    def token(self) -> str:
        """A token for a writer's NOTIFY (CommitListener)."""
        return f"{self._prefix}{next(self._tokens)}"

    def committed(self, token: str, rows: Sequence[QueuedRow]) -> None:
        """A writer's committed outbox rows (CommitListener): sent as they are once their
        NOTIFY is heard. A standby drops them: the leader reads them from the outbox."""
        if self.is_leader:
            self._handovers.handed(token, rows)
            self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled. Reconnects after database or Kafka errors."""
        while True:
            try:
                await self._run_connected()
            except asyncio.CancelledError:
                raise
            except LeadershipLostError as lost:
                log.warning("outbox relay: %s; standing by", lost)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning(
                    "outbox relay: %s; retrying in %.1fs", error, self.settings.poll_interval
                )
            except Exception:
                log.exception("outbox relay failed; retrying")
            self.is_leader = False
            await asyncio.sleep(self.settings.poll_interval)

    async def _run_connected(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings=KEEPALIVES, command_timeout=60)
        producer: AIOKafkaProducer | None = None
        try:
            # Standby until this relay holds the lease.
            while True:
                if await self.lease.claim(conn):
                    break
                await asyncio.sleep(self.settings.poll_interval)
            log.info("outbox relay %s leads (term %s)", self.name, self.lease.term)
            # Started only once leader; a new producer (a new producer id) per leadership, so
            # a round that failed is never half-continued by the same producer.
            producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka.bootstrap,
                client_id=self.name,
                enable_idempotence=True,
                # Each round is already a batch read from the outbox: waiting for more only adds
                # latency to every hop of a transfer.
                linger_ms=0,
                # A round's rows for one partition go in one batch; a fuller batch ends the
                # round early. Well under the broker's default message.max.bytes (1 MiB).
                max_batch_size=512 * 1024,
            )
            await producer.start()
            # A new leadership reads first: rows committed before it listened were heard of
            # by no one.
            self._handovers = Handovers(
                self._prefix, HANDOVER_WAIT, clock=asyncio.get_running_loop().time
            )
            self.is_leader = True
            await conn.add_listener(OUTBOX_CHANNEL, self._on_notify)
            try:
                await self._publish_while_leader(conn, producer)
            except asyncio.CancelledError:
                # A clean stop: hand the lease over now rather than when it expires.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.lease.release(conn), 2)
                raise
        finally:
            self.is_leader = False
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
            with contextlib.suppress(Exception):
                await conn.close()

    async def _publish_while_leader(self, conn: Connection, producer: AIOKafkaProducer) -> None:
        """Rounds of two kinds: rows handed over by this process's writers, sent as they are;
        and reads of the outbox (handover.py says when), which also mark the rows sent before.
        A read comes at least every `poll_interval`, the fallback should anything be missed."""
        loop = asyncio.get_running_loop()
        handovers = self._handovers
        last_purge = last_read = marked_at = -float("inf")
        unmarked: list[int] = []
        while True:
            self._wake.clear()
            if self.lease.renewal_due() and not await self.lease.claim(conn):
                raise LeadershipLostError("another relay holds the lease")
            now = loop.time()
            if handovers.must_read or now - last_read >= self.settings.poll_interval:
                handovers.reading()
                unmarked = await self.publish_pending(conn, producer, unmarked)
                handovers.read(unmarked, full=len(unmarked) >= self.settings.batch_size)
                self._sent.add(len(unmarked))
                last_read = marked_at = now
            else:
                handed = handovers.take()
                if handed:
                    sent = await self.send(producer, handed)
                    if sent < len(handed):
                        handovers.must_read = True  # the rest, read from the outbox, in order
                    unmarked += [row.id for row in handed[:sent]]
                    self._sent.add(sent)
                if unmarked and (
                    now - marked_at >= MARK_DELAY or len(unmarked) >= self.settings.batch_size
                ):
                    await conn.execute(MARK, unmarked)
                    unmarked, marked_at = [], now
            if now - last_purge > self.settings.purge_every:
                await self.purge(conn)
                last_purge = now
            if not (handovers.ready() or handovers.must_read):
                # A NOTIFY or a handover wakes us at once; the timeout is the fallback.
                deadlines = [
                    last_read + self.settings.poll_interval,
                    loop.time() + self.lease.seconds_to_renewal(),
                ]
                if unmarked:
                    deadlines.append(marked_at + MARK_DELAY)
                if (late := handovers.next_deadline()) is not None:
                    deadlines.append(late)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), max(0.0, min(deadlines) - loop.time())
                    )
            if (handovers.ready() or handovers.must_read) and self._lingers():
                await asyncio.sleep(self.settings.linger)  # rows gather meanwhile

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._handovers.heard(str(payload))
        self._wake.set()

    def _lingers(self) -> bool:
        return self.settings.linger > 0 and (
            self._sent.per_second() >= self.settings.linger_min_rate
        )

    async def publish_pending(
        self, conn: Connection, producer: AIOKafkaProducer, sent_before: Sequence[int] = ()
    ) -> list[int]:
        """Mark `sent_before` (rows Kafka acknowledged) published and publish the next batch of
        unpublished rows; return the ids sent, for the next call to mark. Raises if any send
        failed (then none of the batch is sent on to be marked)."""
        # The SELECT sees the table as it was before the UPDATE of the same statement, hence
        # the exclusion of the rows being marked.
        rows = await conn.fetch(
            "WITH marked AS (UPDATE outbox SET published_at = now() WHERE id = ANY($2::bigint[]))"
            " SELECT id, topic, key, value FROM outbox"
            " WHERE published_at IS NULL AND id <> ALL($2::bigint[])"
            " ORDER BY id LIMIT $1",
            self.settings.batch_size,
            list(sent_before),
        )
        if not rows:
            return []
        if self.fault:
            await self.fault("fetched")
        queued = [QueuedRow(r["id"], r["topic"], r["key"], r["value"]) for r in rows]
        published = await self.send(producer, queued)
        if published < len(rows):
            self._handovers.must_read = True  # a partition's batch is full: the rest go next
        return [row.id for row in queued[:published]]

    async def send(self, producer: AIOKafkaProducer, rows: Sequence[QueuedRow]) -> int:
        """Send `rows` in order, up to the first that does not fit its partition's batch; return
        how many were sent. Raises if any send failed (then none of them counts as sent)."""
        # One record batch per partition per round, which the broker appends whole or not at
        # all: sequence numbers alone do not stop a later message of a stream landing without
        # an earlier one, because a producer's first batch on a partition is accepted whatever
        # its sequence (if an earlier batch of the round failed, say expired while the
        # partition had no leader, a later one of the same partition would still land).
        batches: dict[TopicPartition, BatchBuilder] = {}
        published = 0
        partitions_of: dict[str, list[int]] = {}
        for row in rows:
            key, topic = row.key.encode(), row.topic
            if topic not in partitions_of:
                partitions_of[topic] = list(await producer.partitions_for(topic))
            partitions = partitions_of[topic]
            partition = TopicPartition(topic, _PARTITIONER(key, partitions, partitions))
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=row.value, timestamp=None) is None:
                break  # that partition's batch is full: the rest go next round
            published += 1
        if not self.lease.valid:
            # Paused past the lease (or renewed too late): a standby may be sending these now.
            raise LeadershipLostError("the lease expired before the round was sent")
        # send_batch() only enqueues; awaiting the futures after lets the batches travel together.
        deliveries = [
            await producer.send_batch(batch, tp.topic, partition=tp.partition)
            for tp, batch in batches.items()
        ]
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]  # the relay restarts with a new producer from the first unmarked row
        if self.fault:
            await self.fault("sent")
        return published

    async def purge(self, conn: Connection) -> int:
        result: str = await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - $1::interval",
            self.settings.retention,
        )
        return int(result.split()[-1])
