"""Building :class:`~writeback.errors.RuleError` values that point at the offending spot of the rule.

The message names the position and what was expected; the text of the exception also carries the rule (or a
window of it, for long rules) with a caret under the position, so a log line shows the mistake in place.
"""

from __future__ import annotations

from writeback.errors import RuleError

_WINDOW = 60  # characters of context shown either side of the caret


def render_caret(rule: str, position: int) -> str:
    """The rule on one line with a ``^`` under ``position``; long rules are cut to a window around it."""
    flat = rule.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    position = max(0, min(position, len(flat)))
    start = max(0, position - _WINDOW)
    end = min(len(flat), position + _WINDOW)
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(flat) else ""
    line = prefix + flat[start:end] + suffix
    caret = " " * (len(prefix) + position - start) + "^"
    return f"    {line}\n    {caret}"


def rule_error(message: str, rule: str, position: int) -> RuleError:
    """A RuleError whose ``str()`` is ``message`` followed by the rule with a caret under ``position``."""
    return RuleError(f"{message}\n{render_caret(rule, position)}", position=position, rule=rule)
