"""Money: euros as `Decimal` with exactly two decimals; never a float, never an exponent."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# The default ceiling of a single amount (docs/command-api.md); the command API makes it
# configurable.
DEFAULT_MAX_AMOUNT = Decimal("1000000000.00")
# No amount or balance reaches this; it keeps every value far inside Decimal's 28 digits.
CEILING = Decimal("1000000000000000")
AMOUNT_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
SEND_INSTEAD = 'send euros as a string with at most two decimals, e.g. "10.50" (or an integer)'


def parse_money(value: Any) -> Decimal:
    """Accept `"10.50"`, `"10"`, `10` or a Decimal; refuse floats, exponents, NaN, >2 decimals."""
    if isinstance(value, bool):
        raise ValueError(f"true/false is not an amount; {SEND_INSTEAD}")
    if isinstance(value, float):
        raise ValueError(
            f"a JSON number with a fraction or an exponent is not exact money; {SEND_INSTEAD}"
        )
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        text = value
        # Exactly the published shape: digits, optionally a point and digits; a leading minus
        # is read so the rules can say "positive" rather than "malformed".
        if not AMOUNT_TEXT.fullmatch(text):
            raise ValueError(f"{value!r} is not an amount; {SEND_INSTEAD}")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not an amount; {SEND_INSTEAD}") from None
    elif isinstance(value, Decimal):
        amount = value
    else:
        raise ValueError(f"an amount must be a string or an integer; {SEND_INSTEAD}")
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite amount; {SEND_INSTEAD}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError(f"{value!r} has more than two decimals; {SEND_INSTEAD}")
    if amount.copy_abs() >= CEILING:
        raise ValueError(f"{value!r} is too large; amounts stay below {CEILING:,}")
    if amount.is_zero():
        return ZERO  # "-0" and "-0.00" are zero, never a negative-looking "-0.00"
    return amount.quantize(CENT)


def format_money(amount: Decimal) -> str:
    return f"{amount.quantize(CENT):f}"


# In messages and JSON, money travels as a two-decimal string: "10.50".
Money = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    PlainSerializer(format_money, return_type=str, when_used="json"),
]
