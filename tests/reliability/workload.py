"""A Jepsen-style bank workload: clients move money among a few accounts through the REST
API while a fault injector kills, pauses and restarts the services and the broker; then a
checker verifies every guarantee of docs/ARCHITECTURE.md against the event stores and the
read model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import httpx

from bank_deploy.postgres import create_databases
from bank_deploy.processes import is_alive
from bank_deploy.providers import Endpoints, free_port, launcher_config_for_tests
from bank_deploy.services import SERVICES, LocalServices, ServiceInstance
from bank_shared.contracts.accounts import ACCOUNT_EVENTS, MoneyDeposited, MoneyWithdrawn
from bank_shared.contracts.envelope import Envelope, read_payload
from bank_shared.settings import PostgresSettings
from tests.conftest import drop_databases, session_databases
from tests.logins import bearer
from tests.read_model import dump_read_model, expected_read_model, history
from tests.support import eventually, fresh_topics, service_env

ACCOUNTS = 10
OPENING = Decimal("1000.00")
TOTAL = ACCOUNTS * OPENING
INSTANCES = {"accounts": 2, "transfers-saga": 2}


@dataclass
class Report:
    seed: int
    duration: float
    operations: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    snapshots: int = 0
    converged_after: float | None = None

    def summary(self) -> str:
        lines = [
            f"bank workload, seed {self.seed}, {self.duration:.0f} s of faults",
            f"  operations: {dict(self.operations)}",
            f"  faults:     {dict(self.faults)}",
            f"  transfers:  {dict(self.outcomes)}",
            f"  in-flight checks during the run: {self.snapshots}",
            f"  converged {self.converged_after:.1f} s after the last fault"
            if self.converged_after is not None
            else "  did NOT converge",
            f"  violations: {len(self.violations)}",
            *(f"    - {v}" for v in self.violations[:20]),
        ]
        return "\n".join(lines)


class Bank:
    """The cluster under test: its services as processes, its databases, its broker."""

    def __init__(self, infra: Endpoints) -> None:
        self.infra = infra
        # The broker restarts where the provider can (the launcher's process, a container).
        self.kafka = infra.broker
        self.pg: PostgresSettings = session_databases(infra.pg)
        run = uuid.uuid4().hex[:8]
        env = service_env(infra.kafka, self.pg, fresh_topics("chaos", partitions=6))
        env |= {s.port_variable: str(free_port()) for s in SERVICES}
        env |= {
            "BANK_ACCOUNTS_CONSUMER_GROUP": f"chaos-{run}-accounts",
            "BANK_SAGA_COMMANDS_GROUP": f"chaos-{run}-saga-commands",
            "BANK_SAGA_ANSWERS_GROUP": f"chaos-{run}-saga-answers",
            "BANK_PROJECTOR_ACCOUNTS_GROUP": f"chaos-{run}-projector-accounts",
            "BANK_PROJECTOR_TRANSFERS_GROUP": f"chaos-{run}-projector-transfers",
            "BANK_COMMAND_API_CONSUMER_GROUP": f"chaos-{run}-command-api",
            # Short deadlines: a step lost to a fault is re-sent within the run.
            "BANK_SAGA_STEP_TIMEOUT": "3",
            "BANK_SAGA_MAX_STEP_BACKOFF": "10",
            "BANK_COMMAND_API_DECISION_TIMEOUT": "5",
            # One teller, several clients, one address: faults are under test here, not the
            # rate limits (429s would read as broken promises).
            "BANK_COMMAND_API_RATE_LIMIT_WRITES": "",
            "BANK_COMMAND_API_RATE_LIMIT_WRITES_PER_ADDRESS": "",
        }
        env["BANK_COMMAND_API_QUERY_API_URL"] = (
            f"http://127.0.0.1:{env['BANK_QUERY_API_HTTP_PORT']}"
        )
        config = launcher_config_for_tests()
        config = config.model_copy(update={"state_dir": config.state_dir / f"chaos-{run}"})
        self.services = LocalServices(config, counts=INSTANCES, env=env)
        self.command_api = f"http://127.0.0.1:{env['BANK_COMMAND_API_HTTP_PORT']}"
        self.query_api = f"http://127.0.0.1:{env['BANK_QUERY_API_HTTP_PORT']}"

    async def start(self) -> None:
        await create_databases(self.pg)
        await asyncio.to_thread(self.services.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.services.stop)
        await drop_databases(self.pg)


async def open_accounts(bank: Bank) -> list[str]:
    accounts = [f"chaos-{i}-{uuid.uuid4().hex[:6]}" for i in range(ACCOUNTS)]
    async with httpx.AsyncClient(base_url=bank.command_api, headers=bearer(), timeout=30) as client:
        for account in accounts:
            answer = await client.post(
                "/accounts",
                json={"owner": "Chaos", "account_id": account, "initial_balance": str(OPENING)},
            )
            answer.raise_for_status()
    return accounts


async def client(
    bank: Bank,
    accounts: list[str],
    rng: random.Random,
    until: float,
    report: Report,
    accepted: set[str],
) -> None:
    """Random transfers (some too large, some to unknown accounts) and reads, as the teller. A
    POST that fails in transit is retried with its Idempotency-Key until the API answers it.
    Each request has a token of its own: a long run outlives one."""
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() < until:
            if rng.random() < 0.2:
                report.operations["read"] += 1
                with contextlib.suppress(httpx.HTTPError):
                    await http.get(
                        f"{bank.query_api}/accounts", params={"limit": 100}, headers=bearer()
                    )
                continue
            source = rng.choice(accounts)
            target = rng.choice([a for a in accounts if a != source] + ["chaos-nobody"])
            amount = f"{rng.randint(1, 60000) / 100:.2f}"
            key = uuid.uuid4().hex
            report.operations["transfer"] += 1
            for _ in range(60):
                try:
                    answer = await http.post(
                        f"{bank.command_api}/transfers",
                        json={
                            "source_account_id": source,
                            "target_account_id": target,
                            "amount": amount,
                        },
                        headers={"Idempotency-Key": key, **bearer()},
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.5)  # the API is down: retry the same request
                    continue
                if answer.status_code == 202:
                    accepted.add(answer.json()["transfer_id"])
                    break
                if answer.status_code >= 500:
                    await asyncio.sleep(0.5)
                    continue
                report.violations.append(
                    f"transfer answered {answer.status_code}: {answer.text[:200]}"
                )
                break
            await asyncio.sleep(rng.random() * 0.05)


async def in_flight_checks(bank: Bank, until: float, report: Report) -> None:
    """Money is conserved at every instant: in one snapshot of the accounts store, the
    balances plus what transfers have withdrawn and not yet deposited equal the total."""
    while time.monotonic() < until:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            total, in_flight = await conservation(bank.pg)
            report.snapshots += 1
            if total + in_flight != TOTAL:
                report.violations.append(
                    f"in a snapshot: balances {total} + in flight {in_flight} != {TOTAL}"
                )
        await asyncio.sleep(0.5)


async def conservation(pg: PostgresSettings) -> tuple[Decimal, Decimal]:
    conn = await asyncpg.connect(pg.dsn(pg.accounts_db))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch("SELECT envelope FROM events ORDER BY stream_id, version")
    finally:
        await conn.close()
    balances: dict[str, Decimal] = {}
    moved: dict[str, Decimal] = {}
    for row in rows:
        envelope = Envelope.model_validate_json(row["envelope"])
        event = read_payload(envelope)
        assert isinstance(event, ACCOUNT_EVENTS)
        balances[event.account_id] = event.balance_after
        if isinstance(event, MoneyDeposited | MoneyWithdrawn) and event.transfer_id:
            sign = -1 if isinstance(event, MoneyWithdrawn) else 1
            moved[event.transfer_id] = (
                moved.get(event.transfer_id, Decimal(0)) + sign * event.amount
            )
    # A transfer's withdrawal not yet matched by its credit or refund is money in flight.
    return sum(balances.values(), Decimal(0)), -sum(moved.values(), Decimal(0))


async def faults(
    bank: Bank, rng: random.Random, until: float, interval: float, report: Report
) -> None:
    """Every `interval` seconds, the next fault of the rotation: every kind comes early, so a
    short run sees a kill of each writer, a paused consumer and a broker restart. Those first
    ones happen even if the run's time is up before them (a slow machine takes longer to
    restart what each fault stopped): the test counts on them."""
    by_name = {i.name: i for i in bank.services.instances}
    first = ["accounts", "pause-consumer", "transfers-saga", "restart-kafka"]
    if bank.kafka is None:
        first.remove("restart-kafka")
    rotation = [
        *first,
        "accounts-2",
        "projector",
        "transfers-saga-2",
        "command-api",
        "query-api",
    ]
    step = 0
    while step < len(first) or time.monotonic() + interval < until:
        await asyncio.sleep(interval)
        kind = rotation[step % len(rotation)]
        if kind in by_name:
            await kill_and_restart(bank.services, by_name[kind])
            report.faults[f"sigkill {kind}"] += 1
        elif kind == "pause-consumer":
            target = rng.choice([i for i in by_name.values() if i.service.name in INSTANCES])
            await pause(bank.services, target, seconds=12)  # > the 10 s session timeout
            report.faults[f"sigstop {target.name}"] += 1
        else:
            assert bank.kafka is not None
            await asyncio.to_thread(bank.kafka.stop)
            await asyncio.to_thread(bank.kafka.start)
            report.faults["restart kafka"] += 1
        step += 1


async def kill_and_restart(services: LocalServices, instance: ServiceInstance) -> None:
    pid = services.pid(instance)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)

        # Gone before the restart, or `start` would find it still running and not start it
        # (a process can take a while to die under load, in the middle of a disk write).
        async def gone() -> bool:
            return not is_alive(pid)

        await eventually(gone, within=30, what=f"{instance.name} (pid {pid}) to die")
    await asyncio.to_thread(services.start, [instance])


async def pause(services: LocalServices, instance: ServiceInstance, seconds: float) -> None:
    pid = services.pid(instance)
    if pid is None:
        return
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


async def converged(bank: Bank, accepted: set[str], within: float, report: Report) -> None:
    """Wait until every accepted transfer has ended and the read model equals the stores."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        streams = await history(bank.pg, bank.pg.transfers_db)
        finished = all(
            (events := streams.get(t))
            and events[-1].type in ("TransferCompleted", "TransferFailed")
            for t in accepted
        )
        if finished and await dump_read_model(bank.pg) == await expected_read_model(bank.pg):
            report.converged_after = time.monotonic() - started
            return
        await asyncio.sleep(1)
    report.violations.append(f"not converged {within:.0f} s after the last fault")


async def check_histories(bank: Bank, accepted: set[str], report: Report) -> None:
    accounts = await history(bank.pg, bank.pg.accounts_db)
    transfers = await history(bank.pg, bank.pg.transfers_db)
    total = Decimal(0)
    effects: dict[str, Counter[str]] = {}
    for account_id, events in accounts.items():
        for envelope in events:
            event = read_payload(envelope)
            assert isinstance(event, ACCOUNT_EVENTS)
            if event.balance_after < 0:
                report.violations.append(f"{account_id} v{envelope.stream_version} is negative")
            transfer_id = getattr(event, "transfer_id", None)
            if transfer_id:
                source = read_payload(transfers[transfer_id][0]).source_account_id  # type: ignore[attr-defined]
                kind = (
                    "debit"
                    if envelope.type == "MoneyWithdrawn"
                    else "refund"
                    if account_id == source
                    else "credit"
                )
                effects.setdefault(transfer_id, Counter())[kind] += 1
        total += read_payload(events[-1]).balance_after  # type: ignore[attr-defined]
    if total != TOTAL:
        report.violations.append(f"event stores hold {total}, not {TOTAL}")
    read_total = sum(
        (Decimal(r[2]) for r in (await dump_read_model(bank.pg))["accounts"]), Decimal(0)
    )
    if read_total != TOTAL:
        report.violations.append(f"read model holds {read_total}, not {TOTAL}")
    missing = accepted - set(transfers)
    if missing:
        report.violations.append(f"{len(missing)} accepted transfers never started")
    for transfer_id, events in transfers.items():
        last = read_payload(events[-1])
        seen = effects.get(transfer_id, Counter())
        if any(n > 1 for n in seen.values()):
            report.violations.append(f"{transfer_id} applied twice: {dict(seen)}")
        if events[-1].type == "TransferCompleted":
            report.outcomes["completed"] += 1
            expected = Counter(debit=1, credit=1)
        elif events[-1].type == "TransferFailed":
            refunded = last.refunded  # type: ignore[attr-defined]
            report.outcomes[f"failed:{last.reason}"] += 1  # type: ignore[attr-defined]
            expected = Counter(debit=1, refund=1) if refunded else Counter()
        else:
            report.outcomes["unfinished"] += 1
            continue
        if seen != expected:
            report.violations.append(f"{transfer_id} ended {events[-1].type} with {dict(seen)}")


async def run_workload(
    infra: Endpoints,
    *,
    duration: float,
    seed: int,
    clients: int = 4,
    fault_interval: float = 3.0,
    convergence_bound: float = 120.0,
) -> Report:
    report = Report(seed=seed, duration=duration)
    rng = random.Random(seed)
    bank = Bank(infra)
    await bank.start()
    try:
        accounts = await open_accounts(bank)
        accepted: set[str] = set()
        until = time.monotonic() + duration
        await asyncio.gather(
            *(
                client(bank, accounts, random.Random(rng.random()), until, report, accepted)
                for _ in range(clients)
            ),
            faults(bank, rng, until, fault_interval, report),
            in_flight_checks(bank, until, report),
        )
        await converged(bank, accepted, convergence_bound, report)
        await check_histories(bank, accepted, report)
    finally:
        await bank.stop()
    return report
