"""WriteStatement: writes that each number their parameters from $1 become one statement."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bank_shared.contracts.accounts import DepositMoney
from bank_shared.contracts.envelope import seal
from bank_shared.eventstore.store import OUTBOX_CHANNEL, OutboxMessage, WriteStatement


def test_each_write_keeps_its_own_parameters_in_one_statement() -> None:
    statement = WriteStatement()
    statement.add("INSERT INTO a (x, y) VALUES ($1, $2)", "x", "y")
    statement.add("UPDATE b SET z = $2 WHERE id = ANY($1::uuid[]) AND z <> $2", ["id"], "z")

    assert statement.sql == (
        "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2)),"
        " w1 AS (UPDATE b SET z = $4 WHERE id = ANY($3::uuid[]) AND z <> $4)"
        " SELECT pg_notify($5, $6) WHERE $7"
    )
    assert statement.args == ["x", "y", ["id"], "z", OUTBOX_CHANNEL, "", False]


def test_the_relay_is_notified_only_when_an_outbox_row_is_written() -> None:
    quiet = WriteStatement()
    quiet.include_changes([], [], [(uuid.uuid4(), None)])
    assert quiet.args[-1] is False

    command = seal(
        DepositMoney(account_id="alice", amount="1.00"),
        message_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        occurred_at=datetime.now(UTC),
    )
    sending = WriteStatement()
    sending.include_changes([], [OutboxMessage("bank.account-commands", "alice", command)], [])
    assert sending.args[-1] is True
    # ... and the statement returns the outbox rows' ids, for the relay to mark.
    assert sending.sql.endswith(
        " SELECT pg_notify($15, $16), ARRAY(SELECT id FROM w1 ORDER BY id) WHERE $17"
    )
