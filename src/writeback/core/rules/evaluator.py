"""Syntax tree → a tree of closures, built once per rule, checked on the way.

Each node becomes a predicate ``fn(obj, env) -> bool``. The per-user work is a dict lookup and a string
operation: literals are case-folded, regexes compiled and ``-in`` lists turned into frozensets here, once.
The checks that need to know what a property is (null only with -eq/-ne, -any only on collections, no mixing
of user and device, special rules alone) also live here, because this is where properties are resolved.

Semantics (Entra ID's, where documented):
- string comparison and regexes are case-insensitive; ``-match`` searches (``"ago"`` matches "Lagos");
- a missing property, ``None``, ``""`` and an empty collection are null; a null value fails every positive
  operator and so passes every negated one (``-ne``, ``-notIn``, ``-notStartsWith`` …);
- a plain operator on a collection is true when any element passes; its negation when none does;
- ``-all`` over an empty collection is true (so ``-all (assignedPlan.servicePlanId -eq null)`` selects users
  with no plans, as documented);
- ``coll -any _ -eq "x" -and …`` without parentheses: the item test is the one comparison after ``-any``
  (the documented device example), the ``-and`` belongs to the rule;
- ``-le``/``-ge``/``-lt``/``-gt`` compare dates when the value is a date or ``system.now``, numbers when it is a
  number, otherwise case-insensitive text.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from writeback.core.rules.context import Env
from writeback.core.rules.diagnostics import rule_error
from writeback.core.rules.durations import add_duration, parse_datetime
from writeback.core.rules.nodes import (
    NULL,
    And,
    Comparison,
    DateLiteral,
    DirectReports,
    Literal,
    MemberOf,
    Node,
    Not,
    Now,
    Null,
    Or,
    Property,
    Quantified,
    Scalar,
    Span,
)
from writeback.core.rules.properties import (
    ITEM_PROPERTIES,
    Kind,
    PropertyInfo,
    graph_keys,
    item_alias_matches,
    items_of,
    lookup,
    make_getter,
    unknown_warning,
)
from writeback.core.rules.special import group_ids_of, group_ids_or_none, manager_of, reports_to
from writeback.errors import RuleError

Pred = Callable[[Any, Env], bool]
Getter = Callable[[Any], Any]

MAX_MEMBER_OF_GROUPS = 50

_COLLECTION_TYPES = (list, tuple, set, frozenset)
_NEGATED = {
    "ne": "eq",
    "notstartswith": "startswith",
    "notendswith": "endswith",
    "notcontains": "contains",
    "notmatch": "match",
    "notin": "in",
}
_ORDERED = {"le": operator.le, "ge": operator.ge, "lt": operator.lt, "gt": operator.gt}
_DATE_OPERATORS = {"eq", "ne", *_ORDERED}
_OBJECTS = ("user", "device")


@dataclass(frozen=True, slots=True)
class CompiledNode:
    """A node with its predicate; leaves keep their getter so explanations can show the actual value."""

    node: Node
    fn: Pred
    children: tuple[CompiledNode, ...] = ()
    getter: Getter | None = None
    label: str | None = None  # the property as written, e.g. "user.department"
    item_body: CompiledNode | None = None  # for -any/-all: the body, evaluated per item


@dataclass(slots=True)
class _Scope:
    """Inside ``-any``/``-all``: which collection the items come from."""

    collection: PropertyInfo
    label: str


@dataclass(slots=True)
class Compiler:
    """Compiles one rule; collects its kind, special form and the properties it reads."""

    rule: str
    kind: str | None = None
    special: str | None = None
    properties: set[str] = field(default_factory=set)
    graph_properties: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)  # valid, but likely a mistake (an unknown property)

    def error(self, message: str, position: int, hint: str | None = None) -> RuleError:
        """``message at position N: hint`` — what is wrong, where, and what to write instead."""
        text = f"{message} at position {position}" + (f": {hint}" if hint else "")
        return rule_error(text, self.rule, position)

    def _op(self, node: Comparison) -> str:
        """The operator as the rule wrote it, for messages."""
        return self.rule[node.op_span.start : node.op_span.end]

    # Structure ------------------------------------------------------------------------------------------------

    def compile_root(self, node: Node) -> CompiledNode:
        special = _find_special(node)
        if special is not None and special is not node:
            what = "Direct Reports" if isinstance(special, DirectReports) else "memberOf"
            raise self.error(
                f"A {what} rule must stand alone",
                special.span.start,
                "it cannot be combined with -and, -or or -not",
            )
        if isinstance(node, Quantified) and self._is_member_of(node.prop):
            node = self._member_of(node)
        compiled = self.compile(node, None)
        if self.kind is None:
            self.kind = "user"
        return compiled

    def compile(self, node: Node, scope: _Scope | None) -> CompiledNode:
        if isinstance(node, Comparison):
            return self._comparison(node, scope)
        if isinstance(node, Not):
            return self._not(node, scope)
        if isinstance(node, And | Or):
            return self._junction(node, scope)
        if isinstance(node, Quantified):
            return self._quantified(node, scope)
        if isinstance(node, DirectReports):
            return self._direct_reports(node)
        return self._compiled_member_of(node)

    def _not(self, node: Not, scope: _Scope | None) -> CompiledNode:
        operand = node.operand
        if isinstance(operand, Comparison) and operand.value.value is NULL:
            raise self.error(
                "-not cannot be applied to a comparison with null",
                node.span.start,
                "Entra ID rejects it; write -eq null or -ne null instead",
            )
        inner = self.compile(operand, scope)
        inner_fn = inner.fn
        return CompiledNode(node, lambda obj, env: not inner_fn(obj, env), (inner,))

    def _junction(self, node: And | Or, scope: _Scope | None) -> CompiledNode:
        children = tuple(self.compile(child, scope) for child in node.operands)
        fns = [c.fn for c in children]
        fn = fns[-1]
        # Right-nested pairs of closures: as fast as a hand-written `a and (b and c)`, and short-circuits.
        for left in reversed(fns[:-1]):
            fn = _and(left, fn) if isinstance(node, And) else _or(left, fn)
        return CompiledNode(node, fn, children)

    # Properties -----------------------------------------------------------------------------------------------

    def _top_property(self, prop: Property, scope: _Scope | None) -> PropertyInfo:
        obj = prop.obj.casefold()
        if prop.obj == "_":
            raise self.error(
                "_ is only allowed inside -any/-all",
                prop.span.start,
                "it stands for one item of a collection",
            )
        if obj not in _OBJECTS:
            raise self.error(
                f'Unknown object "{prop.obj}" in "{prop.text}"',
                prop.span.start,
                "properties start with user. or device.",
            )
        if scope is not None:
            raise self.error(
                f'"{prop.text}" cannot be used inside -any/-all',
                prop.span.start,
                f"compare the item ({_item_hint(scope)}) instead",
            )
        if self.kind is None:
            self.kind = obj
        elif self.kind != obj:
            raise self.error(
                f'"{prop.text}" in a {self.kind} rule',
                prop.span.start,
                "a rule is for users or for devices, not both",
            )
        info = lookup(obj, prop.name)
        if info.kind is Kind.UNKNOWN:
            warning = unknown_warning(obj, prop.name)
            if warning not in self.warnings:
                self.warnings.append(warning)
        self.properties.add(info.name)
        self.graph_properties.update(graph_keys(info))
        return info

    def _resolve(self, prop: Property, scope: _Scope | None) -> tuple[Getter, PropertyInfo]:
        """The getter and type of ``prop``, at the top level or for one item of a collection."""
        if scope is None or prop.obj.casefold() in _OBJECTS:
            info = self._top_property(prop, scope)
            return make_getter(info.keys, info.nested), info
        collection = scope.collection
        if prop.obj == "_":
            if collection.kind is Kind.OBJECT_COLLECTION:
                raise self.error(
                    f"The items of {scope.label} are objects",
                    prop.span.start,
                    f"compare {_item_hint(scope)}, not _",
                )
            return _identity, PropertyInfo("_", Kind.STRING, ())
        if collection.kind is Kind.STRING_COLLECTION:
            raise self.error(f"The items of {scope.label} are strings", prop.span.start, "compare them as _")
        if not item_alias_matches(collection, prop.obj):
            raise self.error(
                f'Unknown item "{prop.text}"', prop.span.start, f"inside -any/-all use {_item_hint(scope)}"
            )
        known = ITEM_PROPERTIES.get(collection.name, ())
        name = next((k for k in known if k.casefold() == prop.name.casefold()), prop.name)
        return make_getter((name,)), PropertyInfo(name, Kind.STRING, (name,))

    # Comparisons ----------------------------------------------------------------------------------------------

    def _comparison(self, node: Comparison, scope: _Scope | None) -> CompiledNode:
        getter, info = self._resolve(node.prop, scope)
        if info.kind is Kind.OBJECT_COLLECTION:
            alias = info.item_alias or "item"
            raise self.error(
                f"{node.prop.text} is a collection of objects",
                node.op_span.start,
                f'use -any or -all, such as {node.prop.text} -any ({alias}.property -eq "value")',
            )
        fn = self._predicate(node, getter, info)
        return CompiledNode(node, fn, getter=getter, label=node.prop.text)

    def _predicate(self, node: Comparison, getter: Getter, info: PropertyInfo) -> Pred:
        op, literal = node.op, node.value
        value = literal.value
        if isinstance(value, Null):
            if op not in ("eq", "ne"):
                raise self.error(
                    f"null can only be compared with -eq or -ne, not {self._op(node)}", literal.span.start
                )
            is_null: Pred = lambda obj, env: _is_null(getter(obj))  # noqa: E731
            return is_null if op == "eq" else _negate(is_null)
        if op in ("in", "notin"):
            if not isinstance(value, tuple):
                raise self.error(f'{self._op(node)} needs a list such as ["a", "b"]', literal.span.start)
            return self._in(op, value, getter)
        if isinstance(value, tuple):
            raise self.error(
                f"A list of values needs -in or -notIn, not {self._op(node)}", node.op_span.start
            )
        if self._is_date(value, info):
            return self._dates(node, value, getter)
        if op in _ORDERED:
            return self._ordered(node, value, getter)
        positive = _NEGATED.get(op, op)
        test = self._text_test(positive, value, literal)
        fn = _over_text(getter, test)
        return _negate(fn) if op in _NEGATED else fn

    def _in(self, op: str, values: tuple[Scalar, ...], getter: Getter) -> Pred:
        texts = frozenset(t.casefold() for t in (_literal_text(v) for v in values) if t is not None)
        allow_null = any(isinstance(v, Null) for v in values)

        def test(text: str) -> bool:
            return text.casefold() in texts

        fn = _over_text(getter, test)
        if allow_null:
            inner = fn
            fn = lambda obj, env: inner(obj, env) or _is_null(getter(obj))  # noqa: E731
        return _negate(fn) if op == "notin" else fn

    def _text_test(self, op: str, value: Scalar, literal: Literal) -> Callable[[str], bool]:
        text = _literal_text(value)
        assert text is not None
        if op == "match":
            search = self._regex(text, literal.span).search
            return lambda s: search(s) is not None
        folded = text.casefold()
        if op == "eq":
            return lambda s: s.casefold() == folded
        if op == "startswith":
            return lambda s: s.casefold().startswith(folded)
        if op == "endswith":
            return lambda s: s.casefold().endswith(folded)
        if op == "contains":
            return lambda s: folded in s.casefold()
        raise self.error(
            f"Unsupported operator -{op}", literal.span.start
        )  # pragma: no cover - grammar prevents it

    def _regex(self, pattern: str, span: Span) -> re.Pattern[str]:
        # .NET named groups (?<name>…) are Python's (?P<name>…); lookbehinds (?<= (?<! are left alone.
        translated = re.sub(r"\(\?<(?![=!])", "(?P<", pattern)
        try:
            return re.compile(translated, re.IGNORECASE)
        except re.error as exc:
            raise self.error(f"Invalid regular expression {pattern!r}", span.start, exc.msg) from exc

    def _is_date(self, value: Scalar, info: PropertyInfo) -> bool:
        if isinstance(value, Now | DateLiteral):
            return True
        return info.kind is Kind.DATETIME and isinstance(value, str) and parse_datetime(value) is not None

    def _dates(self, node: Comparison, value: Scalar, getter: Getter) -> Pred:
        op = node.op
        if op not in _DATE_OPERATORS:
            raise self.error(
                f"Dates can be compared with -eq, -ne, -le, -ge, -lt or -gt, not {self._op(node)}",
                node.op_span.start,
            )
        target = _date_target(value, node.value.span, self)
        compare = _ORDERED.get(op, operator.eq)

        def positive(obj: Any, env: Env) -> bool:
            threshold = target(env)
            for item in items_of(getter(obj)):
                moment = parse_datetime(item)
                if moment is not None and compare(moment, threshold):
                    return True
            return False

        return _negate(positive) if op == "ne" else positive

    def _ordered(self, node: Comparison, value: Scalar, getter: Getter) -> Pred:
        compare = _ORDERED[node.op]
        if isinstance(value, bool):
            raise self.error(
                f"true and false cannot be compared with {self._op(node)}", node.value.span.start
            )
        if isinstance(value, int | float):
            number = float(value)

            def numeric(text: str) -> bool:
                try:
                    return bool(compare(float(text), number))
                except ValueError:
                    return False

            return _over_text(getter, numeric)
        folded = str(value).casefold()
        return _over_text(getter, lambda s: bool(compare(s.casefold(), folded)))

    # Collections and special rules ----------------------------------------------------------------------------

    def _quantified(self, node: Quantified, scope: _Scope | None) -> CompiledNode:
        if scope is not None:
            raise self.error("-any/-all cannot be nested inside another -any/-all", node.prop.span.start)
        if self._is_member_of(node.prop):
            raise self.error("A memberOf rule must stand alone", node.span.start)  # pragma: no cover
        info = self._top_property(node.prop, None)
        if not info.kind.is_collection and info.kind is not Kind.UNKNOWN:
            raise self.error(
                f"{node.prop.text} holds a single value, not a collection",
                node.prop.span.start,
                f"-{node.quantifier} needs a collection such as user.proxyAddresses",
            )
        body = self.compile(node.body, _Scope(info, node.prop.text))
        getter = make_getter(info.keys, info.nested)
        body_fn = body.fn
        if node.quantifier == "any":
            # Explicit loops rather than any()/all() over a generator: about twice as fast per item.
            def fn(obj: Any, env: Env) -> bool:
                for item in items_of(getter(obj)):  # noqa: SIM110
                    if body_fn(item, env):
                        return True
                return False

        else:

            def fn(obj: Any, env: Env) -> bool:
                for item in items_of(getter(obj)):  # noqa: SIM110
                    if not body_fn(item, env):
                        return False
                return True

        return CompiledNode(node, fn, getter=getter, label=node.prop.text, item_body=body)

    def _is_member_of(self, prop: Property) -> bool:
        return prop.obj.casefold() in _OBJECTS and prop.name.casefold() == "memberof"

    def _member_of(self, node: Quantified) -> MemberOf:
        """Checks ``x.memberOf -any (group.objectId -in [...])`` and turns it into a MemberOf node."""
        if node.quantifier != "any":
            raise self.error("memberOf rules take -any, not -all", node.span.start)
        body = node.body
        shape_ok = (
            isinstance(body, Comparison)
            and body.prop.obj.casefold() == "group"
            and body.prop.name.casefold() == "objectid"
            and body.op in ("in", "eq")
        )
        if not shape_ok:
            position = body.span.start
            raise self.error(
                "Expected group.objectId -in ['<group id>', …] inside the memberOf rule", position
            )
        assert isinstance(body, Comparison)
        raw = body.value.value
        values = raw if isinstance(raw, tuple) else (raw,)
        if not values or not all(isinstance(v, str) for v in values):
            raise self.error("memberOf needs group object ids as quoted strings", body.value.span.start)
        if len(values) > MAX_MEMBER_OF_GROUPS:
            raise self.error(
                f"memberOf rules can name at most {MAX_MEMBER_OF_GROUPS} groups, this one names {len(values)}",
                body.value.span.start,
            )
        return MemberOf(node.prop.obj.casefold(), frozenset(str(v).casefold() for v in values), node.span)

    def _compiled_member_of(self, node: MemberOf) -> CompiledNode:
        self.kind = node.obj
        self.special = "memberOf"
        self.properties.add("memberOf")
        self.graph_properties.add("memberOf")
        wanted = node.group_ids

        def fn(obj: Any, env: Env) -> bool:
            return not wanted.isdisjoint(group_ids_of(obj, env))

        return CompiledNode(node, fn, getter=lambda obj: group_ids_or_none(obj), label=f"{node.obj}.memberOf")

    def _direct_reports(self, node: DirectReports) -> CompiledNode:
        self.kind = "user"
        self.special = "directReports"
        self.properties.add("manager")
        self.graph_properties.add("manager")
        manager_id = node.manager_id.casefold()

        def fn(obj: Any, env: Env) -> bool:
            return reports_to(obj, env, node.manager_id, manager_id)

        return CompiledNode(node, fn, getter=manager_of, label="user.manager")


def _find_special(node: Node) -> Node | None:
    """The first Direct Reports or memberOf node anywhere in the tree (they must be the whole rule)."""
    if isinstance(node, DirectReports | MemberOf):
        return node
    if isinstance(node, Quantified):
        prop = node.prop
        if prop.obj.casefold() in _OBJECTS and prop.name.casefold() == "memberof":
            return node
        return None
    if isinstance(node, Not):
        return _find_special(node.operand)
    if isinstance(node, And | Or):
        for child in node.operands:
            found = _find_special(child)
            if found is not None:
                return found
    return None


def _item_hint(scope: _Scope) -> str:
    if scope.collection.kind is Kind.OBJECT_COLLECTION:
        alias = scope.collection.item_alias or scope.collection.name.rstrip("s")
        return f"{alias}.property"
    return "_"


# Small closures ---------------------------------------------------------------------------------------------


def _and(left: Pred, right: Pred) -> Pred:
    return lambda obj, env: left(obj, env) and right(obj, env)


def _or(left: Pred, right: Pred) -> Pred:
    return lambda obj, env: left(obj, env) or right(obj, env)


def _negate(fn: Pred) -> Pred:
    return lambda obj, env: not fn(obj, env)


def _identity(obj: Any) -> Any:
    return obj


def _over_text(getter: Getter, test: Callable[[str], bool]) -> Pred:
    """A predicate applying ``test`` to the property's text, or to any element's text for collections."""

    def fn(obj: Any, env: Env) -> bool:
        value = getter(obj)
        if value.__class__ is str:  # the common case first: one string
            return test(value)
        if value is None:
            return False
        if isinstance(value, _COLLECTION_TYPES):
            for item in value:
                text = _value_text(item)
                if text is not None and test(text):
                    return True
            return False
        text = _value_text(value)
        return text is not None and test(text)

    return fn


def _value_text(value: Any) -> str | None:
    """How an actual value compares as text: booleans as true/false, numbers without a trailing .0."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _literal_text(value: Scalar) -> str | None:
    if isinstance(value, Null):
        return None
    if isinstance(value, DateLiteral):
        return value.text
    if isinstance(value, Now):
        return "system.now"
    return _value_text(value)


def _is_null(value: Any) -> bool:
    if value.__class__ is str:
        return value == ""
    if value is None:
        return True
    return isinstance(value, (*_COLLECTION_TYPES, Mapping)) and len(value) == 0


def _date_target(value: Scalar, span: Span, compiler: Compiler) -> Callable[[Env], datetime]:
    if isinstance(value, Now):
        now_value = value
        key = object()  # memo slot for this comparison's threshold within one call

        def from_now(env: Env) -> datetime:
            cached = env.memo.get(key)
            if cached is None:
                offset = now_value.offset
                cached = env.now if offset is None else add_duration(env.now, offset, now_value.sign)
                env.memo[key] = cached
            result: datetime = cached
            return result

        return from_now
    text = value.text if isinstance(value, DateLiteral) else str(value)
    moment = parse_datetime(text)
    if moment is None:
        raise compiler.error(f'"{text}" is not a date such as 2020-06-10T18:13:20Z', span.start)
    fixed = moment
    return lambda env: fixed
