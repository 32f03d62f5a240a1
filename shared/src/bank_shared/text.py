"""Free text a person types (an account holder's name, a transfer's description): what the bank
stores, and what it refuses.

PostgreSQL's text and jsonb cannot hold U+0000, and UTF-8 cannot hold a lone surrogate, so such
text would fail deep in a service instead of at the door. Beyond what cannot be stored, a name is
refused if it holds a character that changes how the text around it looks without being seen:
controls (tabs and newlines too), bidirectional overrides and isolates (which can make a name
read backwards on a teller's screen, as in "Trojan Source", CVE-2021-42574) and invisible
format characters such as zero-width spaces. Two format characters are kept: the zero-width
non-joiner and joiner (U+200C, U+200D), which Persian, Indic scripts and emoji sequences need.
What is kept is normalised to NFC, so that one name has one spelling.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, StringConstraints
from pydantic_core import PydanticCustomError

# Format characters (category Cf) that real names need; every other Cf is refused.
KEPT_FORMAT_CHARACTERS = frozenset({"\u200c", "\u200d"})


def refused_character(text: str) -> tuple[int, str] | None:
    """The first character of `text` the bank does not store, with its position, or None."""
    for position, character in enumerate(text):
        category = unicodedata.category(character)
        if category in ("Cc", "Cs") or (
            category == "Cf" and character not in KEPT_FORMAT_CHARACTERS
        ):
            return position, character
    return None


def clean_text(text: str, what: str = "a name") -> str:
    """`text` in NFC, or ValueError naming the first character that is refused."""
    found = refused_character(text)
    if found is not None:
        position, character = found
        name = unicodedata.name(character, "a control character")
        raise ValueError(
            f"character {position + 1} is U+{ord(character):04X} ({name}), which {what} may not"
            " hold: send letters, digits, spaces and punctuation only (no control, invisible"
            " or text-direction characters)"
        )
    return unicodedata.normalize("NFC", text)


def _valid_name(text: str) -> str:
    try:
        return clean_text(text)
    except ValueError as error:
        raise PydanticCustomError("invalid_text", str(error)) from None


def _valid_description(text: str) -> str:
    try:
        return clean_text(text, "a description")
    except ValueError as error:
        raise PydanticCustomError("invalid_text", str(error)) from None


def _nfc(value: object) -> object:
    # Before the length is checked: NFC can make a text longer (U+0958 is two characters in
    # NFC), and the limit is on the text as stored.
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


# A person's name as the bank keeps it: 1 to 200 characters in NFC, trimmed, `clean_text`.
PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    BeforeValidator(_nfc),
    AfterValidator(_valid_name),
]


# What a person types to say what a transfer is for (a memo): 1 to 140 characters in NFC,
# trimmed, `clean_text`.
DESCRIPTION_MAX_LENGTH = 140
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=DESCRIPTION_MAX_LENGTH),
    BeforeValidator(_nfc),
    AfterValidator(_valid_description),
]
