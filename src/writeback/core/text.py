"""Words as an administrator reads them, shared by every output (CLI, console, progress, log). Pure."""

from __future__ import annotations

import re

# C0 controls (U+0000-U+001F, tab and newline included), DEL (U+007F) and C1 controls (U+0080-U+009F): the
# characters a terminal acts on instead of showing. ESC (U+001B) and CSI (U+009B) start escape sequences that
# hide text ("\x1b[8m" makes the rest of a plan invisible), move the cursor or set the window title; CR and
# LF let a name forge whole lines of output.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROLS_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def printable(value: object, *, lines: bool = False) -> str:
    """``value`` as text safe to print on a terminal: each control character as a visible ``\\xNN`` escape
    ("A\\x1b[8mB" for a name holding ESC), everything else unchanged (backslashes too, so DNs read as AD
    writes them). ``lines`` keeps newlines, for a message writeback itself wrote on several lines (a rule
    error and its caret line); a single value never needs it.

    The one place human output escapes values that come from the cloud or AD; JSON output needs none
    (json.dumps writes controls as JSON escapes)."""
    text = value if isinstance(value, str) else str(value)
    pattern = _CONTROLS_BUT_NEWLINE if lines else _CONTROLS
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def without_controls(text: str) -> str:
    """``text`` with every C0 control, DEL and C1 control removed: for names writeback derives (CN,
    sAMAccountName), where AD refuses them or stores them to no one's benefit."""
    return _CONTROLS.sub("", text)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """The count and the noun as a person writes them: "1 member", "2 members", "0 members"; ``nouns`` for an
    irregular plural ("1 entry", "2 entries")."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
