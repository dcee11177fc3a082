"""The parsed form of a rule: small immutable nodes that remember where in the rule text they came from.

The parser produces these; the evaluator compiles them once into closures and the explainer walks them. Keeping
the tree separate from both lets error messages and explanations quote the exact source text of each part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open character range ``[start, end)`` in the rule text."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Duration:
    """An ISO 8601 duration split into calendar months (variable length) and an exact remainder."""

    months: int
    delta: timedelta
    text: str


@dataclass(frozen=True, slots=True)
class Now:
    """``system.now``, optionally ``-plus``/``-minus`` a duration; resolved at evaluation time."""

    offset: Duration | None
    sign: int = 1


class Null:
    """The ``null`` keyword (distinct from the string "null")."""

    _instance: Null | None = None

    def __new__(cls) -> Null:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "null"


NULL = Null()

Scalar: TypeAlias = "str | bool | int | float | Null | Now | DateLiteral"


@dataclass(frozen=True, slots=True)
class DateLiteral:
    """An unquoted date or date-time such as ``2020-06-10T18:13:20Z``."""

    text: str


@dataclass(frozen=True, slots=True)
class Literal:
    """A value on the right of an operator; ``value`` is a tuple for ``[...]`` lists."""

    value: Scalar | tuple[Scalar, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Property:
    """``object.name`` as written (``user.department``, ``assignedPlan.service``) or ``_``."""

    obj: str  # "user", "device", an item alias such as "assignedPlan", or "_"
    name: str  # "" for "_"
    span: Span

    @property
    def text(self) -> str:
        return "_" if self.obj == "_" else f"{self.obj}.{self.name}"


@dataclass(frozen=True, slots=True)
class Comparison:
    prop: Property
    op: str  # canonical lower-case name without hyphen: "eq", "notstartswith", ...
    value: Literal
    op_span: Span
    span: Span


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    span: Span


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Quantified:
    """``collection -any (body)`` / ``-all``; ``body`` compares ``_`` or ``alias.property`` of each item."""

    prop: Property
    quantifier: str  # "any" | "all"
    body: Node
    span: Span


@dataclass(frozen=True, slots=True)
class DirectReports:
    manager_id: str
    span: Span


@dataclass(frozen=True, slots=True)
class MemberOf:
    """``user.memberOf -any (group.objectId -in [...])``: direct members of any of ``group_ids``."""

    obj: str
    group_ids: frozenset[str]
    span: Span


Node: TypeAlias = "Comparison | Not | And | Or | Quantified | DirectReports | MemberOf"
