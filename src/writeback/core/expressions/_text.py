"""Text transformations whose .NET behaviour differs from Python's defaults.

- NormalizeDiacritics follows Microsoft's published table: accents go, and the letters .NET does
  not decompose (æ, ø, œ, ß, ł and the dotless i) become the ASCII spellings the table lists.
- ToUpper/ToLower use the invariant culture, which maps one character to one character
  (``"ß".upper()`` stays ``ß``), unless a Turkic culture asks for the dotted/dotless i rules.
- PCase is .NET's ToTitleCase: first letter of each word upper, the rest lower.
"""

from __future__ import annotations

import unicodedata

_LIGATURES = str.maketrans(
    {
        "æ": "ae", "Æ": "AE", "ø": "oe", "Ø": "OE", "œ": "oe", "Œ": "OE", "ß": "ss",
        "ł": "l", "Ł": "L", "\u0131": "i", "đ": "d", "Đ": "D",
    }
)  # fmt: skip


def _is_latin_diacritic(char: str) -> bool:
    # Only the Combining Diacritical Marks block: marks of other scripts (Japanese dakuten,
    # Indic vowel signs) change the letter itself and must survive.
    return "\u0300" <= char <= "\u036f"


def normalize_diacritics(value: str) -> str:
    decomposed = unicodedata.normalize("NFD", value)
    stripped = "".join(char for char in decomposed if not _is_latin_diacritic(char))
    return unicodedata.normalize("NFC", stripped.translate(_LIGATURES))


_TURKIC = ("tr", "az")


def _turkic(culture: str | None) -> bool:
    return bool(culture) and culture.lower().split("-")[0] in _TURKIC  # type: ignore[union-attr]


def to_upper(value: str, culture: str | None = None) -> str:
    if _turkic(culture):
        value = value.replace("i", "İ").replace("\u0131", "I")  # dotless i
    return "".join(up if len(up := char.upper()) == 1 else char for char in value)


def to_lower(value: str, culture: str | None = None) -> str:
    if _turkic(culture):
        value = value.replace("I", "\u0131")  # dotless i.replace("İ", "i")
    return "".join(low if len(low := char.lower()) == 1 else char for char in value)


def _default_separator(char: str) -> bool:
    # ToTitleCase starts a new word after anything that is not a letter, digit or combining mark.
    return not (char.isalnum() or unicodedata.category(char).startswith("M") or char == "'")


def proper_case(value: str, separators: str | None = None) -> str:
    out: list[str] = []
    start_of_word = True
    for char in value:
        is_sep = char in separators if separators else _default_separator(char)
        if is_sep:
            out.append(char)
            start_of_word = True
        else:
            out.append(to_upper(char) if start_of_word else to_lower(char))
            start_of_word = False
    return "".join(out)
