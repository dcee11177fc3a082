"""Microsoft's attribute-mapping expression language (Entra provisioning / Cloud Sync), pure Python.

Administrators can paste their Cloud Sync mappings unchanged::

    expr = compile_expression('Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))')
    expr.evaluate({"displayName": "Sales", "objectId": "3a5c3221-c465-48c0-95b8-e9305786a271"})
    # -> "Sales_e9305786a271"

An expression is compiled once into a tree of closures and evaluated many times; no I/O, no clock,
no randomness, so the same source always maps to the same value (plans stay reproducible).
Syntax, unknown functions, wrong argument counts and invalid literal regular expressions raise
:class:`~writeback.errors.ConfigError` at compile time with the line and column. At evaluation only
data-dependent problems can fail (``Error()``, ``Item`` out of range, a non-numeric count read from an
attribute); those raise ``ConfigError`` too, naming the function's position and never the data.
Null semantics per function are listed in :mod:`writeback.core.expressions._functions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from writeback.core.expressions._compiler import Compiler
from writeback.core.expressions._functions import FUNCTIONS, UNSUPPORTED
from writeback.core.expressions._grammar import parse
from writeback.core.expressions._values import Evaluator, Source, Value, text
from writeback.errors import ConfigError

__all__ = ["FUNCTION_NAMES", "UNSUPPORTED_FUNCTIONS", "Expression", "Source", "Value", "compile_expression"]

FUNCTION_NAMES: frozenset[str] = frozenset(function.name for function in FUNCTIONS.values())
"""The functions this implementation knows, spelt as Microsoft documents them."""

UNSUPPORTED_FUNCTIONS: dict[str, str] = dict(UNSUPPORTED.values())
"""Microsoft's functions writeback refuses, with the reason and what to use instead."""


@dataclass(frozen=True)
class Expression:
    """A compiled expression. Equal when the source text is equal; safe to share between threads."""

    text: str
    attributes: frozenset[str]
    """Attribute names referenced, as first written (``[displayName]`` -> ``"displayName"``)."""
    _run: Evaluator = field(repr=False, compare=False)
    redacted: bool = False
    """The expression uses Redact(): its value is written to AD but shown as "[redacted]" in plans and logs."""
    ignores_empty: bool = False
    """The expression is IgnoreFlowIfNullOrEmpty(...): a null or empty result leaves the AD attribute as it is."""

    def evaluate_value(self, source: Mapping[str, Any] | Source) -> Value:
        """The raw result: str, int, bool, a tuple of strings for multi-values, or None for null. ``source``
        may be a :class:`Source` built once for several expressions over the same object."""
        return self._run(Source.of(source))

    def evaluate(self, source: Mapping[str, Any] | Source) -> str | None:
        """The result as one string (booleans as "True"/"False"), or None when the result is null.

        ``source`` maps attribute names (matched case-insensitively) to str, bool, int, list or None;
        a missing attribute is null. A multi-valued result with more than one value is an error here:
        use :meth:`evaluate_values` for multi-valued target attributes.
        """
        value = self.evaluate_value(source)
        if isinstance(value, tuple):
            if len(value) > 1:
                raise ConfigError(
                    f"expression {self.text!r} gives {len(value)} values where one is expected; "
                    "pick one with Item() or combine them with Join()"
                )
            return value[0] if value else None
        return text(value)

    def evaluate_values(self, source: Mapping[str, Any] | Source) -> tuple[str, ...]:
        """The result as a tuple of strings, for multi-valued targets; null gives ``()``."""
        value = self.evaluate_value(source)
        if isinstance(value, tuple):
            return value
        shown = text(value)
        return () if shown is None else (shown,)


def compile_expression(expression: str, *, file: str | None = None, key: str | None = None) -> Expression:
    """Parse and check ``expression``; raise :class:`ConfigError` (with ``file``/``key`` when given)."""
    try:
        compiler = Compiler()
        run = compiler.compile(parse(expression))
    except ConfigError as exc:
        if file is None and key is None:
            raise
        raise ConfigError(str(exc), file=file, key=key) from exc
    return Expression(expression, compiler.attributes, run, compiler.redacted, compiler.ignores_empty)
