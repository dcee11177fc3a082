"""Rule text → syntax tree (:mod:`writeback.core.rules.nodes`), with lark doing the lexing and LALR parsing.

Lark's exceptions are translated here, at the one boundary, into RuleError messages a person can act on:
the position, what was expected there, and what came just before.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from writeback.core.rules.diagnostics import rule_error
from writeback.core.rules.durations import parse_duration
from writeback.core.rules.nodes import (
    NULL,
    And,
    Comparison,
    DateLiteral,
    DirectReports,
    Literal,
    Node,
    Not,
    Now,
    Or,
    Property,
    Quantified,
    Scalar,
    Span,
)
from writeback.errors import RuleError

MAX_RULE_LENGTH = 3072


@cache
def _parser() -> Lark:
    """The LALR parser, built on first use (not at import) and then shared: building it takes ~50 ms."""
    grammar = resources.files("writeback.core.rules").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(
        grammar, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=False
    )


def _span(meta: Any) -> Span:
    return Span(meta.start_pos, meta.end_pos)


def _tok_span(tok: Token) -> Span:
    assert tok.start_pos is not None and tok.end_pos is not None
    return Span(tok.start_pos, tok.end_pos)


def _canonical(keyword: str) -> str:
    """'-startsWith' (any dash, any case) → 'startswith'."""
    return keyword.lstrip("-\u2013\u2014").casefold()


_BACKTICK_OR_BACKSLASH_QUOTE = re.compile(r"[`\\]\"|``")


def unescape_double_quoted(body: str) -> str:
    """Inside "…": `" and \\" are a literal quote, `` a literal backtick; other backslashes stay (regexes)."""
    return _BACKTICK_OR_BACKSLASH_QUOTE.sub(lambda m: m.group(0)[1], body)


@v_args(meta=True)
class _ToNodes(Transformer[Token, Node]):
    """Builds :mod:`nodes` from lark's tree; every node keeps its source span."""

    def start(self, meta: Any, children: list[Any]) -> Node:
        node: Node = children[0]
        return node

    def or_expr(self, meta: Any, children: list[Any]) -> Or:
        return Or(tuple(c for c in children if not isinstance(c, Token)), _span(meta))

    def and_expr(self, meta: Any, children: list[Any]) -> And:
        return And(tuple(c for c in children if not isinstance(c, Token)), _span(meta))

    def negation(self, meta: Any, children: list[Any]) -> Not:
        return Not(children[1], _span(meta))

    def group(self, meta: Any, children: list[Any]) -> Node:
        node: Node = children[0]
        return node

    def comparison(self, meta: Any, children: list[Any]) -> Comparison:
        prop_tok, op_tok, value = children
        return Comparison(_property(prop_tok), _canonical(op_tok), value, _tok_span(op_tok), _span(meta))

    def quantified_block(self, meta: Any, children: list[Any]) -> Quantified:
        prop_tok, quant_tok, body = children
        return Quantified(_property(prop_tok), _canonical(quant_tok), body, _span(meta))

    quantified_single = quantified_block

    def direct_reports(self, meta: Any, children: list[Any]) -> DirectReports:
        literal: Literal = children[1]
        return DirectReports(str(literal.value), _span(meta))

    # Values -------------------------------------------------------------------------------------------------

    def string(self, meta: Any, children: list[Any]) -> Literal:
        tok: Token = children[0]
        text = str(tok)
        value: str
        if tok.type == "DQ_STRING":
            value = unescape_double_quoted(text[1:-1])
        elif tok.type == "SQ_STRING":
            value = text[1:-1].replace("''", "'")
        else:  # BT_STRING: `"Sales`" is the value "Sales" including its quotes
            value = '"' + unescape_double_quoted(text[2:-2]) + '"'
        return Literal(value, _span(meta))

    def number(self, meta: Any, children: list[Any]) -> Literal:
        text = str(children[0])
        return Literal(float(text) if "." in text else int(text), _span(meta))

    def datetime(self, meta: Any, children: list[Any]) -> Literal:
        return Literal(DateLiteral(str(children[0])), _span(meta))

    def true(self, meta: Any, children: list[Any]) -> Literal:
        return Literal(True, _span(meta))

    def false(self, meta: Any, children: list[Any]) -> Literal:
        return Literal(False, _span(meta))

    def null(self, meta: Any, children: list[Any]) -> Literal:
        return Literal(NULL, _span(meta))

    def now(self, meta: Any, children: list[Any]) -> Literal:
        if len(children) == 1:
            return Literal(Now(None), _span(meta))
        _, plus_tok, duration_tok = children
        sign = -1 if _canonical(plus_tok) == "minus" else 1
        try:
            duration = parse_duration(str(duration_tok))
        except ValueError as exc:
            raise _SemanticError(str(exc), _tok_span(duration_tok).start) from exc
        return Literal(Now(duration, sign), _span(meta))

    def list(self, meta: Any, children: list[Any]) -> Literal:
        items: list[Scalar] = []
        for child in children:
            if isinstance(child.value, tuple):
                raise _SemanticError("A list cannot contain another list", child.span.start)
            items.append(child.value)
        return Literal(tuple(items), _span(meta))


def _property(tok: Token) -> Property:
    text = str(tok)
    span = _tok_span(tok)
    if text == "_":
        return Property("_", "", span)
    obj, _, name = text.partition(".")
    if "." in name:
        raise _SemanticError(
            f'"{text}" is not a property', span.start, "write object.property, such as user.department"
        )
    return Property(obj, name, span)


class _SemanticError(Exception):
    """Raised inside the transformer; turned into a RuleError with the rule text by :func:`parse`."""

    def __init__(self, message: str, position: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.hint = hint


def parse(rule: str) -> Node:
    """Parse ``rule`` into a syntax tree. Raises RuleError (with position and caret) when it does not parse."""
    if len(rule) > MAX_RULE_LENGTH:
        raise rule_error(
            f"The rule is {len(rule)} characters long; Entra ID allows at most {MAX_RULE_LENGTH}",
            rule,
            MAX_RULE_LENGTH,
        )
    if not rule.strip():
        raise rule_error("The rule is empty: expected a property such as user.department", rule, 0)
    try:
        tree = _parser().parse(rule)
        node: Node = _ToNodes().transform(tree)
    except VisitError as exc:
        inner = exc.orig_exc
        if isinstance(inner, _SemanticError):
            hint = f": {inner.hint}" if inner.hint else ""
            raise rule_error(
                f"{inner.message} at position {inner.position}{hint}", rule, inner.position
            ) from exc
        raise
    except UnexpectedInput as exc:
        message, position = describe_syntax_error(rule, exc)
        raise rule_error(message, rule, position) from exc
    except lark.exceptions.LarkError as exc:  # pragma: no cover - defensive: any other lark failure
        raise RuleError(f"The rule could not be parsed: {exc}", rule=rule) from exc
    return node


# Friendly names for what the parser expected ---------------------------------------------------------------

_VALUE_TERMINALS = {
    "DQ_STRING",
    "SQ_STRING",
    "BT_STRING",
    "NUMBER",
    "DATETIME",
    "TRUE",
    "FALSE",
    "NULL",
    "SYSTEM_NOW",
}
_START_TERMINALS = {"PROPERTY", "LPAR", "NOT", "DIRECT_REPORTS"}
_DESCRIPTIONS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"OPERATOR", "QUANTIFIER"}), "an operator such as -eq"),
    (frozenset(_VALUE_TERMINALS | {"LSQB"}), 'a value such as "text", a number, true, false or null'),
    (frozenset(_START_TERMINALS), "a property such as user.department"),
    (frozenset({"DURATION"}), "a duration such as p1d"),
    (frozenset({"AND", "OR"}), "-and, -or"),
    (frozenset({"RPAR"}), '")"'),
    (frozenset({"RSQB"}), '"]"'),
    (frozenset({"COMMA"}), '","'),
    (frozenset({"$END"}), "the end of the rule"),
)

_PREVIOUS_TOKEN = re.compile(
    r"""("(?:[^"`\\]|`.|\\.)*"|'(?:[^']|'')*'|[^\s()\[\],"']+|[()\[\],])\s*$""", re.DOTALL
)


_STRING_LITERALS = re.compile(r"""`"(?:[^`]|`(?!"))*`"|"(?:[^"`\\]|`.|\\.)*"|'(?:[^']|'')*'""", re.DOTALL)


def _in_context(rule: str, position: int, expected: set[str]) -> set[str]:
    """Fit lark's expected terminals to the bracket nesting at ``position``.

    LALR merges states, so after a value it offers ")" "]" "," even outside any bracket; and it does not
    list the end of the rule among the alternatives. Counting brackets outside strings is enough to fix both.
    """
    code = _STRING_LITERALS.sub("", rule[:position])
    in_list = code.count("[") > code.count("]")
    in_group = code.count("(") > code.count(")")
    expected = expected - ({"AND", "OR"} if in_list else {"RSQB", "COMMA"})
    if not in_group:
        expected = expected - {"RPAR"}
    if expected & {"AND", "OR"} and not in_group and not in_list:
        expected = expected | {"$END"}
    return expected


def _describe_expected(expected: set[str]) -> str:
    parts = [text for names, text in _DESCRIPTIONS if expected & names]
    if not parts:
        return "something else"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _previous(rule: str, position: int) -> str | None:
    match = _PREVIOUS_TOKEN.search(rule[:position])
    return match.group(1) if match else None


def _quoted(text: str) -> str:
    """Quote a piece of the rule for a message, unless it is already a quoted string."""
    return text if text[:1] in ('"', "'", "`") else f'"{text}"'


def describe_syntax_error(rule: str, exc: UnexpectedInput) -> tuple[str, int]:
    """A message and 0-based position for a lark parse failure, phrased as what was expected where."""
    if (isinstance(exc, UnexpectedToken) and exc.token.type == "$END") or isinstance(exc, UnexpectedEOF):
        position = len(rule.rstrip())
        expected = set(getattr(exc, "expected", set()) or set())
        prev = _previous(rule, position)
        after = f" after {_quoted(prev)}" if prev else ""
        return (
            f"The rule ends too early: expected {_describe_expected(expected)}{after} at position {position}",
            position,
        )
    if isinstance(exc, UnexpectedToken):
        position = exc.token.start_pos if exc.token.start_pos is not None else 0
        expected = _in_context(rule, position, set(exc.expected))
        found = str(exc.token)
    elif isinstance(exc, UnexpectedCharacters):
        position = exc.pos_in_stream if exc.pos_in_stream is not None else 0
        expected = _in_context(rule, position, set(exc.allowed or ()))
        word = re.match(r"[^\s()\[\],]+", rule[position:])
        found = word.group(0) if word else rule[position]
        if found[0] in "\"'`":
            return f"Unterminated string starting at position {position}: add the closing quote", position
    else:  # pragma: no cover - lark raises only the kinds above for LALR
        position = getattr(exc, "pos_in_stream", 0) or 0
        expected, found = set(), ""
    prev = _previous(rule, position)
    after = f" after {_quoted(prev)}" if prev else ""
    snippet = found if len(found) <= 30 else found[:27] + "..."
    return (
        f"Expected {_describe_expected(expected)}{after} at position {position}, found {_quoted(snippet)}",
        position,
    )
