"""Words as an administrator reads them, shared by every output (CLI, console, progress, log). Pure."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """The count and the noun as a person writes them: "1 member", "2 members", "0 members"; ``nouns`` for an
    irregular plural ("1 entry", "2 entries")."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
