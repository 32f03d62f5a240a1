"""Money: two-decimal Decimal euros; floats, exponents, NaN and extra decimals are refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from bank_shared.money import Money, format_money, parse_money


class Priced(BaseModel):
    amount: Money


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.50", Decimal("10.50")),
        ("10.5", Decimal("10.50")),
        ("10", Decimal("10.00")),
        ("0", Decimal("0.00")),
        ("0.01", Decimal("0.01")),
        ("-3.20", Decimal("-3.20")),
        (10, Decimal("10.00")),
        (0, Decimal("0.00")),
        (-5, Decimal("-5.00")),
        (Decimal("10.5"), Decimal("10.50")),
        (Decimal("1E+3"), Decimal("1000.00")),
    ],
)
def test_exact_amounts_are_accepted_with_two_decimals(value: Any, expected: Decimal) -> None:
    amount = Priced(amount=value).amount

    assert amount == expected
    assert amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    "value",
    [
        10.5,
        10.0,
        0.1,
        True,
        False,
        "1e3",
        "+5",
        " 10.50 ",
        "10.",
        ".5",
        "1E3",
        "1e-2",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        Decimal("NaN"),
        Decimal("Infinity"),
        "10.505",
        "0.001",
        Decimal("10.500"),
        "",
        "   ",
        "abc",
        "10,50",
        "10.50 EUR",
        "€10",
        "1.2.3",
        "1-2",
        "--1",
        ".",
        "+",
        None,
        [10],
        {"amount": "10"},
    ],
)
def test_inexact_or_malformed_amounts_are_refused_with_guidance(value: Any) -> None:
    with pytest.raises(ValidationError, match=r'"10\.50"'):
        Priced(amount=value)


def test_amounts_serialise_to_json_as_two_decimal_strings() -> None:
    assert Priced(amount=Decimal("10.5")).model_dump_json() == '{"amount":"10.50"}'
    assert Priced(amount=7).model_dump(mode="json") == {"amount": "7.00"}


def test_amounts_stay_decimals_in_python_mode() -> None:
    dumped = Priced(amount="10.50").model_dump()

    assert dumped == {"amount": Decimal("10.50")}
    assert isinstance(dumped["amount"], Decimal)


def test_amounts_survive_a_json_round_trip_exactly() -> None:
    original = Priced(amount="12345.67")

    assert Priced.model_validate_json(original.model_dump_json()) == original


def test_a_json_number_with_a_fraction_is_refused() -> None:
    with pytest.raises(ValidationError, match="not exact money"):
        Priced.model_validate_json('{"amount": 10.5}')


def test_a_json_integer_is_accepted() -> None:
    assert Priced.model_validate_json('{"amount": 10}').amount == Decimal("10.00")


def test_negative_zero_parses_as_zero_and_never_prints_a_minus() -> None:
    amount = Priced(amount="-0").amount
    assert amount == Decimal("0.00")
    assert format_money(amount) == "0.00"


@pytest.mark.parametrize("value", [10**14 + 1, "999999999999999.99", 123456789012345])
def test_large_amounts_below_the_ceiling_are_exact(value: int | str) -> None:
    amount = Priced(amount=value).amount

    assert amount == Decimal(value)
    assert format_money(amount) == f"{Decimal(value):.2f}"


@pytest.mark.parametrize("value", [10**15, "1000000000000000.00", 10**20, "-" + "9" * 16])
def test_amounts_at_or_beyond_the_ceiling_are_refused_as_too_large(value: int | str) -> None:
    with pytest.raises(ValidationError, match="too large"):
        Priced(amount=value)


def parsed_or_refused(value: Any) -> Decimal | ValidationError:
    try:
        return Priced(amount=value).amount
    except ValidationError as error:
        return error


@pytest.mark.parametrize("value", [10**27, 10**30, "1" * 30, "9" * 27 + ".99"])
def test_amounts_beyond_decimal_precision_are_exact_or_refused_never_a_crash(value: Any) -> None:
    # Either answer is acceptable; a raw decimal.InvalidOperation escaping validation is not.
    result = parsed_or_refused(value)

    assert isinstance(result, ValidationError) or result == Decimal(value)


def test_parse_money_refuses_floats_by_itself() -> None:
    with pytest.raises(ValueError, match="not exact money"):
        parse_money(1.25)


def test_the_guidance_names_the_offending_value() -> None:
    with pytest.raises(ValidationError, match=r"10\.505"):
        Priced(amount="10.505")


def test_format_money_always_shows_two_decimals() -> None:
    assert format_money(Decimal("3")) == "3.00"
    assert format_money(Decimal("3.1")) == "3.10"
    assert format_money(Decimal("1000000000")) == "1000000000.00"
