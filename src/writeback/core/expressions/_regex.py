"""The .NET regular-expression dialect of Replace, mapped onto Python's ``re``.

Administrators paste patterns written for .NET: named groups are ``(?<name>...)`` or ``(?'name'...)``,
back-references ``\\k<name>``, and replacement strings use ``${name}``, ``$1``, ``$&`` and ``$$``.
Python spells the first two differently and has its own replacement syntax, so both are translated
here rather than asking administrators to rewrite their Cloud Sync mappings.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NAMED_GROUP = re.compile(r"\(\?(?:<([A-Za-z_][A-Za-z0-9_]*)>|'([A-Za-z_][A-Za-z0-9_]*)')")
_BACKREF = re.compile(r"\\k(?:<([A-Za-z_][A-Za-z0-9_]*)>|'([A-Za-z_][A-Za-z0-9_]*)')")
_REPLACEMENT_TOKEN = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}|([0-9]+)|([&`'+_]))")


def translate_pattern(pattern: str) -> str:
    """Rewrite .NET-only group syntax to Python's; everything else is shared by the two dialects.

    Escapes and character classes are skipped so that ``\\(?<x>`` or ``[(?<x>]`` stay literal.
    """
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        char = pattern[i]
        if char == "\\":
            ref = None if in_class else _BACKREF.match(pattern, i)
            if ref:
                out.append(f"(?P={ref.group(1) or ref.group(2)})")
                i = ref.end()
            else:
                out.append(pattern[i : i + 2])
                i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A ']' right after '[' or '[^' is a literal member of the class, not its end.
            j = i + 1 + (pattern.startswith("^", i + 1))
            if j < n and pattern[j] == "]":
                out.append(pattern[i : j + 1])
                i = j + 1
                continue
        elif char == "(":
            group = _NAMED_GROUP.match(pattern, i)
            if group:
                out.append(f"(?P<{group.group(1) or group.group(2)}>")
                i = group.end()
                continue
        out.append(char)
        i += 1
    return "".join(out)


Expander = Callable[["re.Match[str]"], str]


def compile_replacement(replacement: str) -> Expander:
    """Compile a .NET replacement string into a function of the match.

    A reference to a group that does not exist is kept literally, as .NET does.
    """
    parts: list[str | Callable[[re.Match[str]], str]] = []
    last = 0
    for token in _REPLACEMENT_TOKEN.finditer(replacement):
        parts.append(replacement[last : token.start()])
        last = token.end()
        literal = token.group(0)
        name, number, special = token.group(1), token.group(2), token.group(3)
        if literal == "$$":
            parts.append("$")
        elif name is not None or number is not None:
            ref: str | int = name if name is not None else number
            if isinstance(ref, str) and ref.isdigit():
                ref = int(ref)
            parts.append(_group_ref(ref, literal))
        else:
            parts.append(_special(special))
    parts.append(replacement[last:])
    if all(isinstance(part, str) for part in parts):
        constant = "".join(part for part in parts if isinstance(part, str))
        return lambda _match: constant
    return lambda match: "".join(part if isinstance(part, str) else part(match) for part in parts)


def _group_ref(ref: str | int, literal: str) -> Callable[[re.Match[str]], str]:
    def expand(match: re.Match[str]) -> str:
        try:
            return match.group(ref) or ""
        except IndexError:  # no such group in the pattern
            return literal

    return expand


def _special(kind: str) -> Callable[[re.Match[str]], str]:
    if kind == "&":
        return lambda match: match.group(0)
    if kind == "`":
        return lambda match: match.string[: match.start()]
    if kind == "'":
        return lambda match: match.string[match.end() :]
    if kind == "_":
        return lambda match: match.string
    # "$+": the last group that took part in the match.
    return lambda match: (match.group(match.lastindex) or "") if match.lastindex else ""
