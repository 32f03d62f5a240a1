"""The outbox relay: publishes committed outbox rows to Kafka, in order, at least once.

- **Two ways in.** The writers of its own process hand their rows over right after their
  commit, and the relay sends them as handed, without reading them back (handover.py says
  when it may). Everything else it reads from the outbox. Both go out the same way.
- **Order.** Rows are read in id order, or taken in the order their commits were heard of
  (NOTIFY comes in commit order), and sent through one idempotent producer (`acks=all`). A
  stream's rows are committed in version order, so its messages reach Kafka in version order.
  A round's rows for one partition travel as one record batch, which the broker appends whole
  or not at all, and the next round starts only once every batch of this one is acknowledged:
  a later message of a stream is never written without the earlier ones.
- **At least once.** A row is marked published only after Kafka acknowledged it (by the next
  read, in the same statement, or by a mark of its own within MARK_DELAY). A crash before the
  mark sends it again after the restart; if any send of a round fails, the relay starts over
  with a new producer from the first unmarked row. Consumers drop what they have seen (by
  message id, or stream version).
- **One leader.** Only the holder of the database's lease publishes (lease.py); the others
  stand by and take over when it stops renewing. A leader checks its lease before each send.
- **Batching.** Woken by a commit, a busy relay waits `linger` (10 ms) before its round, so
  that rows committed meanwhile share it and every later hop handles them together; a quiet
  relay (fewer than `linger_min_rate` rows a second) does not wait (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bank_shared.db import KEEPALIVES, Connection
from bank_shared.eventstore.handover import Handovers
from bank_shared.eventstore.lease import RelayLease
from bank_shared.eventstore.store import OUTBOX_CHANNEL, OutboxRow
from bank_shared.settings import KafkaSettings, RelaySettings

log = logging.getLogger(__name__)

# The producer's own partitioner (murmur2 of the key), so a key lands where send() puts it.
PARTITIONER = DefaultPartitioner()
# Tests inject faults at named points ("fetched", "sent") to stop the relay mid-way.
FaultHook = Callable[[str], Awaitable[None]]
# How long acknowledged rows may wait for a read to mark them published before a mark of
# their own (while they wait, each read leaves them out).
MARK_DELAY = 0.05
# How long a NOTIFY of this process's writers waits for its rows before the relay reads them
# from the outbox instead: only a writer cancelled right after its commit makes it wait.
HANDOVER_WAIT = 0.5
MARK = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"

# Marks the rows sent before (the statement's UPDATE), reads the next ones (its SELECT, which
# sees the table as it was before the UPDATE: hence the exclusion of the rows being marked).
READ_AND_MARK = (
    "WITH marked AS (UPDATE outbox SET published_at = now() WHERE id = ANY($2::bigint[]))"
    " SELECT id, topic, key, value FROM outbox"
    " WHERE published_at IS NULL AND id <> ALL($2::bigint[])"
    " ORDER BY id LIMIT $1"
)


class LeadershipLostError(Exception):
    """The relay's lease is over (it paused, or a renewal failed): it must send nothing more."""


class RecentRows:
    """How many rows the relay sent lately: in the last whole second, or so far in this one if
    that is more (a burst counts at once, a lull only after a second)."""

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
        self.lease = RelayLease(settings.lease_key, settings.lease_duration)
        self.is_leader = False
        self._wake = asyncio.Event()
        self._sent = RecentRows(clock)
        # The tokens of this relay's writers; another process's relay has another prefix.
        self._prefix = f"{uuid.uuid4().hex[:12]}-"
        self._tokens = itertools.count()
        self._handovers = Handovers(self._prefix, HANDOVER_WAIT)

    def token(self) -> str:
        """A token for a writer's NOTIFY (store.CommitListener)."""
        return f"{self._prefix}{next(self._tokens)}"

    def committed(self, token: str, rows: Sequence[OutboxRow]) -> None:
        """A writer's committed rows (store.CommitListener), sent once their NOTIFY is heard.
        A standby drops them: whoever leads reads them from the outbox."""
        if self.is_leader:
            self._handovers.handed(token, rows)
            self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled; after a database or Kafka error, or a lost lease, stand by
        and try again."""
        while True:
            try:
                await self._run_connected()
            except asyncio.CancelledError:
                raise
            except LeadershipLostError as lost:
                log.warning("outbox relay %s: %s; standing by", self.name, lost)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("outbox relay %s: %s; trying again", self.name, error)
            except Exception:
                log.exception("outbox relay %s failed; trying again", self.name)
            self.is_leader = False
            await asyncio.sleep(self.settings.poll_interval)

    async def _run_connected(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings=KEEPALIVES, command_timeout=60)
        producer: AIOKafkaProducer | None = None
        try:
            while True:  # standby until this relay holds the lease
                if await self.lease.claim(conn):
                    break
                await asyncio.sleep(self.settings.poll_interval)
            log.info("outbox relay %s leads (term %s)", self.name, self.lease.term)
            producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka.bootstrap,
                client_id=self.name,
                enable_idempotence=True,
                # Each round is a batch already: waiting for more would only add latency.
                linger_ms=0,
                # A round's rows for one partition go in one batch; a full one ends the round.
                max_batch_size=512 * 1024,
            )
            await producer.start()
            # A new leadership reads first: rows committed before it listened were heard of by
            # no one.
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
                await self._wait(handovers, last_read, marked_at if unmarked else None)
            if (handovers.ready() or handovers.must_read) and self._lingers():
                await asyncio.sleep(self.settings.linger)  # rows gather meanwhile

    async def _wait(self, handovers: Handovers, last_read: float, marked_at: float | None) -> None:
        """Until woken by a NOTIFY or a handover, or the first of: the fallback read, the lease's
        renewal, the mark of rows sent, the end of the wait for late handed rows."""
        loop = asyncio.get_running_loop()
        deadlines = [
            last_read + self.settings.poll_interval,
            loop.time() + self.lease.seconds_to_renewal(),
        ]
        if marked_at is not None:
            deadlines.append(marked_at + MARK_DELAY)
        if (late := handovers.next_deadline()) is not None:
            deadlines.append(late)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, min(deadlines) - loop.time()))

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
        """Mark `sent_before` (rows Kafka acknowledged) published, then send the next rows;
        return the ids sent, for the next call to mark. Raises if any send failed."""
        rows = await conn.fetch(READ_AND_MARK, self.settings.batch_size, list(sent_before))
        if not rows:
            return []
        if self.fault:
            await self.fault("fetched")
        queued = [OutboxRow(r["id"], r["topic"], r["key"], r["value"]) for r in rows]
        sent = await self.send(producer, queued)
        if sent < len(queued):
            self._handovers.must_read = True  # a partition's batch is full: the rest go next
        return [row.id for row in queued[:sent]]

    async def send(self, producer: AIOKafkaProducer, rows: Sequence[OutboxRow]) -> int:
        """Send `rows` in order, up to the first that does not fit its partition's batch; return
        how many were sent. Raises if any send failed (then none of them counts as sent)."""
        # One record batch per partition: sequence numbers alone would not stop a later message
        # of a stream landing without an earlier one, as a producer's first batch on a partition
        # is accepted whatever its sequence.
        batches: dict[TopicPartition, Any] = {}
        partitions: dict[str, list[int]] = {}
        fitted = 0
        for row in rows:
            if row.topic not in partitions:
                partitions[row.topic] = sorted(await producer.partitions_for(row.topic))
            key = row.key.encode()
            every = partitions[row.topic]
            partition = TopicPartition(row.topic, PARTITIONER(key, every, every))
            batch = batches.get(partition) or batches.setdefault(partition, producer.create_batch())
            if batch.append(key=key, value=row.value, timestamp=None) is None:
                break  # that partition's batch is full: the rest go next round
            fitted += 1
        if not self.lease.valid:
            # Paused past the lease (or renewed too late): a standby may be sending these now.
            raise LeadershipLostError("the lease expired before the round was sent")
        # send_batch() only enqueues; awaiting the deliveries after lets the batches go together.
        deliveries = [
            await producer.send_batch(batch, tp.topic, partition=tp.partition)
            for tp, batch in batches.items()
        ]
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        if failed := [r for r in results if isinstance(r, BaseException)]:
            # The relay starts over, with a new producer, from the first unmarked row.
            raise failed[0]
        if self.fault:
            await self.fault("sent")
        return fitted

    async def purge(self, conn: Connection) -> int:
        result: str = await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - $1::interval",
            self.settings.retention,
        )
        return int(result.split()[-1])
