"""What a person's name or a description may hold: refused characters are named, kept text is
NFC, and the length limit counts the text as kept."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from bank_shared.text import DESCRIPTION_MAX_LENGTH, Description, PersonName, clean_text

NAME = TypeAdapter(PersonName)


@pytest.mark.parametrize(
    ("text", "position", "code"),
    [
        ("a\x00b", 2, "U+0000"),
        ("ab\tc", 3, "U+0009"),
        ("a\x7f", 2, "U+007F"),
        ("a\u0085", 2, "U+0085"),  # a C1 control
        ("abc\u202e", 4, "U+202E"),  # right-to-left override
        ("\u2067x", 1, "U+2067"),  # right-to-left isolate
        ("a\u200bb", 2, "U+200B"),  # zero-width space
        ("\ufeffab", 1, "U+FEFF"),  # byte order mark
        ("a\ud800", 2, "U+D800"),  # a lone surrogate
    ],
)
def test_a_refused_character_is_named_with_its_position(
    text: str, position: int, code: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"character {position} is {code}")):
        clean_text(text)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Zoe\u0308", "Zo\u00eb"),  # composed
        ("\u0645\u200c\u06cc", "\u0645\u200c\u06cc"),  # a zero-width non-joiner, kept
        ("\U0001f469\u200d\U0001f4bb", "\U0001f469\u200d\U0001f4bb"),  # an emoji sequence
        ("Ana Mar\u00eda O'Neil-Smith", "Ana Mar\u00eda O'Neil-Smith"),
    ],
)
def test_kept_text_is_normalised_to_nfc(text: str, kept: str) -> None:
    assert clean_text(text) == kept


def test_a_name_is_trimmed_and_refusals_carry_their_own_error_type() -> None:
    assert NAME.validate_python("  Alice  ") == "Alice"
    with pytest.raises(ValidationError) as refused:
        NAME.validate_python("Al\x00ice")
    assert refused.value.errors()[0]["type"] == "invalid_text"
    with pytest.raises(ValidationError):
        NAME.validate_python(" " * 3)
    with pytest.raises(ValidationError):
        NAME.validate_python("x" * 201)


@pytest.mark.parametrize(
    ("kind", "limit"), [(PersonName, 200), (Description, DESCRIPTION_MAX_LENGTH)]
)
def test_the_length_limit_is_on_the_text_as_stored_in_nfc(kind: Any, limit: int) -> None:
    """U+0958 is two characters in NFC: a text that fits before NFC but not after is refused
    at the door, never accepted and then refused deep in a service."""
    adapter: TypeAdapter[str] = TypeAdapter(kind)
    assert len(adapter.validate_python("\u0958" * (limit // 2))) == limit
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python("\u0958" * (limit // 2 + 1))
    assert refused.value.errors()[0]["type"] == "string_too_long"
