"""Grammar of Microsoft's attribute-mapping expressions, and syntax errors an administrator can act on.

The language is VBA-like: ``Function(arg, ...)``, ``[attribute]``, ``"string"`` (``\\"`` and ``\\\\``
escape), integers, ``&H`` hex numbers, the ``&`` string operator and the comparison operators IIF
conditions use (``= <> < <= > >=``). Arguments may be left out (``Replace([mail], "@x", , , "", , )``),
which Microsoft's own examples rely on. The parser is built on first use, not at import.
"""

from __future__ import annotations

from functools import cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from writeback.errors import ConfigError

GRAMMAR = r"""
start: expr

?expr: term
     | term COMPOP term        -> compare

?term: atom
     | term "&" atom           -> amp

?atom: call
     | ATTRIBUTE               -> attribute
     | STRING                  -> string
     | NUMBER                  -> number
     | HEXNUMBER               -> hexnumber
     | NAME                    -> name
     | "(" expr ")"

call: NAME "(" args ")"
args: arg ("," arg)*
arg: expr?

COMPOP: "<>" | "<=" | ">=" | "=" | "<" | ">"
ATTRIBUTE: /\[[^\[\]\r\n]*\]/
STRING: /"(?:[^"\\]|\\.)*"/s
NUMBER: /-?[0-9]+/
HEXNUMBER: /&[Hh][0-9A-Fa-f]+/
NAME: /[A-Za-z_][A-Za-z0-9_]*/

%import common.WS
%ignore WS
"""

_FRIENDLY = {
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "AMPERSAND": "'&'",
    "COMPOP": "a comparison (= <> < <= > >=)",
    "ATTRIBUTE": "an attribute such as [displayName]",
    "STRING": 'a string in double quotes such as "text"',
    "NUMBER": "a number",
    "HEXNUMBER": "a hex number such as &HFF",
    "NAME": "a function name",
    "$END": "the end of the expression",
}


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def where(line: int | None, column: int | None) -> str:
    """The position phrase every message uses, so errors read the same everywhere."""
    return f"line {line or 1}, column {column or 1}"


def parse(text: str) -> Tree[Token]:
    """Parse ``text`` into a lark tree, or raise :class:`ConfigError` saying where and what was expected."""
    if not text.strip():
        raise ConfigError('expression is empty; write a function, an [attribute] or a "string"')
    try:
        return _parser().parse(text)
    except UnexpectedInput as exc:
        raise ConfigError(_describe(exc, text)) from exc


def _expected(names: set[str] | frozenset[str]) -> str:
    shown = sorted({_FRIENDLY.get(name, name) for name in names})
    return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)


def _describe(exc: UnexpectedInput, text: str) -> str:
    at = where(exc.line if exc.line != -1 else None, exc.column if exc.column != -1 else None)
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        char = text[pos] if pos is not None and 0 <= pos < len(text) else ""
        if char == '"':
            return f"syntax error at {at}: string is not closed (a '\"' inside a string is written \\\")"
        if char == "[":
            return f"syntax error at {at}: attribute is not closed with ']'"
        found = f"unexpected character {char!r}"
        return f"syntax error at {at}: {found}; expected {_expected(exc.allowed or set())}"
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            at = where(None, len(text) + 1) if "\n" not in text else at
            return f"syntax error at {at}: expression ends too early; expected {_expected(exc.accepts or exc.expected)}"
        return f"syntax error at {at}: unexpected {str(token)!r}; expected {_expected(exc.accepts or exc.expected)}"
    if isinstance(exc, UnexpectedEOF):
        return f"syntax error at end of expression: expected {_expected(set(exc.expected))}"
    return f"syntax error at {at}"  # pragma: no cover - lark has no other UnexpectedInput kinds
