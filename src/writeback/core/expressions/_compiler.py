"""Compile a parsed expression into a tree of closures: checked once, evaluated many times.

Every name, argument count and literal regular expression is checked here, so an expression that
compiles can only fail at evaluation for reasons that depend on the data (Error(), Item out of range,
a non-numeric count read from an attribute).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lark import Token, Tree

from writeback.core.expressions._functions import FUNCTIONS, OMITTED_RUN, UNSUPPORTED, Node
from writeback.core.expressions._grammar import where
from writeback.core.expressions._values import Evaluator, Source, Value, text
from writeback.errors import ConfigError

_ESCAPE = re.compile(r"\\(.)", re.S)

# Bare words Microsoft's examples use as enum arguments (InStr, ConvertFromBase64) and booleans.
_NAMES: dict[str, Value] = {
    "true": True,
    "false": False,
    "vbtextcompare": "vbTextCompare",
    "vbbinarycompare": "vbBinaryCompare",
    "unicode": "Unicode",
    "utf8": "UTF8",
    "ascii": "ASCII",
}


def unescape(token: str) -> str:
    r"""The value of a string literal: ``\"`` is a quote and ``\\`` a backslash.

    Any other backslash is kept as written, so a regex pasted with single backslashes (``"\d"``)
    still means what its author meant.
    """
    body = token[1:-1]
    return _ESCAPE.sub(lambda m: m.group(1) if m.group(1) in '\\"' else m.group(0), body)


def _constant(value: Value, at: str) -> Node:
    return Node(lambda _s: value, at, is_literal=True, literal=value)


def _called(item: object, name: str) -> bool:
    if not (isinstance(item, Tree) and item.data == "call"):
        return False
    return str(item.children[0]).lower() == name


def _only_argument(item: Tree[Token]) -> object:
    args = item.children[1]
    assert isinstance(args, Tree)
    if len(args.children) != 1:
        return None
    arg = args.children[0]
    assert isinstance(arg, Tree)
    return arg.children[0] if arg.children else None


class Compiler:
    """Walks one lark tree; collects the attribute names it references and whether it uses Redact."""

    def __init__(self) -> None:
        self._attributes: dict[str, str] = {}  # case-folded -> first spelling seen
        self.redacted = False
        self.ignores_empty = False
        self._flow_root: object = None

    @property
    def attributes(self) -> frozenset[str]:
        return frozenset(self._attributes.values())

    def compile(self, tree: Tree[Token]) -> Evaluator:
        (root,) = tree.children
        # IgnoreFlowIfNullOrEmpty decides whether the attribute is written at all, so it must wrap the
        # whole expression (Redact around it changes nothing about the value). Microsoft documents it only
        # there; nested, "drop the attribute" would depend on which branch ran, so it is refused.
        top: object = root
        while isinstance(top, Tree) and _called(top, "redact") and _only_argument(top) is not None:
            top = _only_argument(top)
        if _called(top, "ignoreflowifnullorempty"):
            self._flow_root = top
            self.ignores_empty = True
        return self._node(root, where(1, 1)).run

    def _node(self, item: object, parent_at: str) -> Node:
        if isinstance(item, Token):  # pragma: no cover - every token sits under an aliased rule
            raise ConfigError(f"{parent_at}: unexpected {item!s}")
        assert isinstance(item, Tree)
        at = parent_at if item.meta.empty else where(item.meta.line, item.meta.column)
        kind = item.data
        if kind == "call":
            return self._call(item, at)
        if kind in ("compare", "amp"):
            return self._operator(item, at)
        token = item.children[0]
        assert isinstance(token, Token)
        if kind == "attribute":
            return self._attribute(str(token), at)
        if kind == "string":
            return _constant(unescape(str(token)), at)
        if kind == "number":
            return _constant(int(token), at)
        if kind == "hexnumber":
            return _constant(int(str(token)[2:], 16), at)
        if kind == "name":
            return self._name(str(token), at)
        raise ConfigError(f"{at}: unsupported syntax {kind!s}")  # pragma: no cover - grammar and walker agree

    def _attribute(self, token: str, at: str) -> Node:
        name = token[1:-1].strip()
        if not name:
            raise ConfigError(f"{at}: empty attribute name []")
        folded = name.casefold()
        self._attributes.setdefault(folded, name)
        return Node(lambda s: s.get(name, folded), at)

    def _name(self, word: str, at: str) -> Node:
        key = word.lower()
        if key in _NAMES:
            return _constant(_NAMES[key], at)
        if key in FUNCTIONS:
            raise ConfigError(
                f"{at}: {FUNCTIONS[key].name} is a function; call it as {FUNCTIONS[key].name}(...)"
            )
        raise ConfigError(
            f"{at}: unknown name {word!r}; write attributes in square brackets ([{word}]) "
            f'and text in double quotes ("{word}")'
        )

    def _call(self, item: Tree[Token], at: str) -> Node:
        name_token, args_tree = item.children
        assert isinstance(args_tree, Tree)
        word = str(name_token)
        if word.lower() in UNSUPPORTED:
            name, why = UNSUPPORTED[word.lower()]
            raise ConfigError(f"{at}: {name}() is not supported by writeback: {why}")
        function = FUNCTIONS.get(word.lower())
        if function is None:
            close = difflib.get_close_matches(word.lower(), FUNCTIONS, n=1)
            hint = f"; did you mean {FUNCTIONS[close[0]].name}?" if close else ""
            raise ConfigError(f"{at}: unknown function {word!r}{hint}")
        if function.name == "Redact":
            self.redacted = True
        if function.name == "IgnoreFlowIfNullOrEmpty" and item is not self._flow_root:
            raise ConfigError(
                f"{at}: IgnoreFlowIfNullOrEmpty must wrap the whole expression, "
                "as in IgnoreFlowIfNullOrEmpty(<expression>): it decides whether the attribute is written at all"
            )
        args = [self._arg(arg, at) for arg in args_tree.children]
        if len(args) == 1 and args[0].omitted:
            args = []  # F() has no arguments, not one left-out argument
        count = len(args)
        too_few = count < function.min_args
        too_many = function.max_args is not None and count > function.max_args
        if too_few or too_many:
            raise ConfigError(f"{at}: {function.name} takes {function.arity()}, got {count}")
        if function.even and count % 2:
            raise ConfigError(
                f"{at}: {function.name} takes source, default, then key/value pairs "
                f"(an even number of arguments), got {count}"
            )
        return Node(function.build(args, at), at)

    def _arg(self, arg: object, call_at: str) -> Node:
        assert isinstance(arg, Tree)
        if not arg.children:
            return Node(OMITTED_RUN, call_at, omitted=True)
        return self._node(arg.children[0], call_at)

    def _operator(self, item: Tree[Token], at: str) -> Node:
        if item.data == "amp":
            left_item, right_item = item.children
            left, right = self._node(left_item, at).run, self._node(right_item, at).run
            return Node(lambda s: _concatenate(left(s), right(s)), at)
        left_item, op, right_item = item.children
        left, right = self._node(left_item, at).run, self._node(right_item, at).run
        test = _COMPARISONS[str(op)]
        return Node(lambda s: _compare(test, left(s), right(s)), at)


def _concatenate(left: Value, right: Value) -> Value:
    """VBA's ``&``: null counts as "", but null & null stays null."""
    if left is None and right is None:
        return None
    return (text(left) or "") + (text(right) or "")


def _number(value: Value) -> int | None:
    if isinstance(value, bool | tuple | datetime) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(value.strip())
    except ValueError:
        return None


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(test: Callable[[Any, Any], bool], left: Value, right: Value) -> Value:
    """Numbers compare as numbers, anything else as case-sensitive text; null makes the test false."""
    if left is None or right is None:
        return False
    if isinstance(left, datetime) and isinstance(right, datetime):
        return test(left, right)
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return test(a, b)
    return test(text(left), text(right))


__all__ = ["Compiler", "Source", "unescape"]
