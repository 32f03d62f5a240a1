"""One statement for a batch: writes that each number their parameters from $1 keep their own."""

from __future__ import annotations

from bank_shared.eventstore.store import one_statement


def test_each_write_keeps_its_own_parameters_in_one_statement() -> None:
    sql, args = one_statement(
        [
            ("INSERT INTO a (x, y) VALUES ($1, $2)", ("x", "y")),
            ("UPDATE b SET z = $2 WHERE id = ANY($1::uuid[]) AND z <> $2", (["id"], "z")),
        ],
        then=("SELECT pg_notify('c', $1), ARRAY(SELECT id FROM w0)", ("token",)),
    )
    assert sql == (
        "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2)),"
        " w1 AS (UPDATE b SET z = $4 WHERE id = ANY($3::uuid[]) AND z <> $4)"
        " SELECT pg_notify('c', $5), ARRAY(SELECT id FROM w0)"
    )
    assert args == ["x", "y", ["id"], "z", "token"]


def test_parameters_past_nine_are_renumbered_whole() -> None:
    ten = "INSERT INTO t VALUES (" + ", ".join(f"${n}" for n in range(1, 11)) + ")"  # noqa: S608
    sql, _ = one_statement(
        [(ten, tuple(range(10))), (ten, tuple(range(10)))], then=("SELECT 1", ())
    )
    assert "$20)" in sql
    assert "$110" not in sql
    assert sql.count("$11,") == 1
