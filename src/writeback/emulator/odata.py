"""OData query options as Graph implements them for directory objects, and object rendering.

``$filter`` is parsed with a small lark grammar (``odata_filter.lark``) into a predicate over the object
dict. Graph splits filters into "basic" ones (``eq``, ``in``, ``startsWith``, ``any``, ``and``/``or``) and
"advanced" ones (``ne``, ``not``, ``endsWith``, ``all``, range operators) that need ``ConsistencyLevel:
eventual`` and ``$count=true``; the emulator refuses the advanced ones without them, like Graph does, so a
client that forgets the header fails here as it would in production.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import lark

from writeback.emulator.apierror import GraphApiError, bad_request, unsupported_query
from writeback.emulator.tenant import COLLECTIONS, INTERNAL_KEYS

Predicate = Callable[[Mapping[str, Any]], bool]

# v1.0 user properties returned without $select (Graph's documented default set).
USER_DEFAULTS_V1 = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
BETA_ONLY = {"group": frozenset({"writebackConfiguration"}), "user": frozenset()}
ODATA_TYPES = {kind: f"#microsoft.graph.{kind}" for kind in COLLECTIONS}
MAX_TOP = 999
DEFAULT_TOP = 100


# ---------------------------------------------------------------------------- $select, $top


def parse_select(text: str | None, kind: str, version: str) -> tuple[str, ...] | None:
    """The selected property names (``id`` always implied), or None for Graph's default set."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise bad_request("Invalid $select: the list of properties is empty.")
    if version == "v1.0":
        for name in names:
            if name in BETA_ONLY.get(kind, frozenset()):
                raise bad_request(
                    f"Could not find a property named '{name}' on type 'microsoft.graph.{kind}'."
                )
    return names


def parse_top(text: str | None, default: int = DEFAULT_TOP) -> int:
    if text is None:
        return default
    try:
        top = int(text)
    except ValueError as exc:
        raise bad_request(f"Invalid page size specified: '{text}'.") from exc
    if not 1 <= top <= MAX_TOP:
        raise bad_request(
            f"Invalid page size specified: '{text}'. Must be between 1 and {MAX_TOP} inclusive."
        )
    return top


# ---------------------------------------------------------------------------- rendering


def render(obj: Mapping[str, Any], kind: str, version: str, select: Sequence[str] | None) -> dict[str, Any]:
    """An object as Graph returns it: the selected properties (null when unset) or the default set."""
    if select is not None:
        out: dict[str, Any] = {"id": obj["id"]}
        for name in select:
            if name not in INTERNAL_KEYS:
                out[name] = obj.get(name)
        return out
    if kind == "user" and version == "v1.0":
        out = {name: obj.get(name) for name in USER_DEFAULTS_V1}
        if out["businessPhones"] is None:
            out["businessPhones"] = []
        return out
    hidden = INTERNAL_KEYS if version == "beta" else INTERNAL_KEYS | BETA_ONLY.get(kind, frozenset())
    out = {k: v for k, v in obj.items() if k not in hidden}
    if kind == "group" and version == "beta" and "writebackConfiguration" not in out:
        out["writebackConfiguration"] = {"isEnabled": None, "onPremisesGroupType": None}
    return out


def context_url(base: str, version: str, entity_set: str, select: Sequence[str] | None = None) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{base}/{version}/$metadata#{entity_set}{suffix}"


# ---------------------------------------------------------------------------- $filter


@dataclass(frozen=True)
class Filter:
    """A compiled ``$filter``.

    ``ids`` is set when the filter pins the result to a set of ids (``id eq`` / ``id in`` at the top of an
    ``and``), so callers can look objects up instead of scanning; ``advanced`` marks operators that need
    ``ConsistencyLevel: eventual``; ``ids_only`` marks ``id eq '…' [or id eq '…']*`` (all delta accepts).
    """

    predicate: Predicate
    ids: frozenset[str] | None = None
    advanced: bool = False
    ids_only: bool = False


@functools.cache
def _parser() -> lark.Lark:
    grammar = resources.files("writeback.emulator").joinpath("odata_filter.lark").read_text(encoding="utf-8")
    return lark.Lark(grammar, parser="earley", lexer="basic", maybe_placeholders=False)


def _norm(value: Any) -> Any:
    """Graph compares directory strings case-insensitively."""
    return value.lower() if isinstance(value, str) else value


def _resolve(obj: Any, path: Sequence[str], env: Mapping[str, Any]) -> Any:
    if path[0] in env:
        value = env[path[0]]
        rest = path[1:]
    else:
        value = obj
        rest = path
    for name in rest:
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}

EnvPredicate = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]


@dataclass(frozen=True)
class _Node:
    test: EnvPredicate
    ids: frozenset[str] | None = None
    advanced: bool = False
    ids_only: bool = False


class _Compile(lark.Transformer[Any, _Node]):
    """Parse tree -> predicate closures. Values arrive as Python values, paths as name tuples."""

    def string(self, items: list[lark.Token]) -> str:
        return str(items[0])[1:-1].replace("''", "'")

    def true(self, _: list[Any]) -> bool:
        return True

    def false(self, _: list[Any]) -> bool:
        return False

    def null(self, _: list[Any]) -> None:
        return None

    def number(self, items: list[lark.Token]) -> float | int:
        text = str(items[0])
        return float(text) if "." in text else int(text)

    def path(self, items: list[lark.Token]) -> tuple[str, ...]:
        return tuple(str(t) for t in items)

    def comparison(self, items: list[Any]) -> _Node:
        path, op, value = items[0], str(items[1]), items[2]
        wanted = _norm(value)
        if op in ("eq", "ne"):
            negate = op == "ne"

            def test(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
                actual = _resolve(obj, path, env)
                if isinstance(actual, list):
                    equal = any(_norm(v) == wanted for v in actual)
                else:
                    equal = _norm(actual) == wanted
                return equal != negate

            ids = frozenset({str(value)}) if op == "eq" and path == ("id",) else None
            return _Node(test, ids=ids, advanced=negate, ids_only=ids is not None)
        compare = _ORDER[op]

        def ordered(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
            actual = _norm(_resolve(obj, path, env))
            try:
                return actual is not None and compare(actual, wanted)
            except TypeError:
                return False

        return _Node(ordered, advanced=True)

    def in_list(self, items: list[Any]) -> _Node:
        path, values = items[0], items[1:]
        wanted = {_norm(v) for v in values}

        def test(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
            actual = _resolve(obj, path, env)
            if isinstance(actual, list):
                return any(_norm(v) in wanted for v in actual)
            return _norm(actual) in wanted

        ids = frozenset(str(v) for v in values) if path == ("id",) else None
        return _Node(test, ids=ids)

    def call(self, items: list[Any]) -> _Node:
        name, path, value = str(items[0]).lower(), items[1], items[2]
        if not isinstance(value, str) or name not in ("startswith", "endswith"):
            raise unsupported_query(f"Unsupported or invalid query filter clause specified: '{items[0]}'.")
        wanted = value.lower()
        starts = name == "startswith"

        def test(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
            actual = _resolve(obj, path, env)
            values = actual if isinstance(actual, list) else [actual]
            for v in values:
                if isinstance(v, str) and (
                    v.lower().startswith(wanted) if starts else v.lower().endswith(wanted)
                ):
                    return True
            return False

        return _Node(test, advanced=not starts)

    def lambda_expr(self, items: list[Any]) -> _Node:
        path, operator, var, body = items[0], str(items[1]), str(items[2]), items[3]
        body_test = body.test
        use_all = operator == "all"

        def test(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
            collection = _resolve(obj, path, env)
            if not isinstance(collection, list):
                return use_all
            inner = lambda v: body_test(obj, {**env, var: v})  # noqa: E731 - local closure
            return all(map(inner, collection)) if use_all else any(map(inner, collection))

        return _Node(test, advanced=use_all or body.advanced)

    def negation(self, items: list[_Node]) -> _Node:
        inner = items[0].test
        return _Node(lambda obj, env: not inner(obj, env), advanced=True)

    def and_expr(self, items: list[_Node]) -> _Node:
        tests = [n.test for n in items]
        id_sets = [n.ids for n in items if n.ids is not None]
        ids = frozenset.intersection(*id_sets) if id_sets else None
        return _Node(
            lambda obj, env: all(t(obj, env) for t in tests),
            ids=ids,
            advanced=any(n.advanced for n in items),
        )

    def or_expr(self, items: list[_Node]) -> _Node:
        tests = [n.test for n in items]
        ids = None
        if all(n.ids is not None for n in items):
            ids = frozenset().union(*(n.ids for n in items if n.ids is not None))
        return _Node(
            lambda obj, env: any(t(obj, env) for t in tests),
            ids=ids,
            advanced=any(n.advanced for n in items),
            ids_only=all(n.ids_only for n in items),
        )


def parse_filter(text: str) -> Filter:
    """Compile a ``$filter``; anything outside Graph's grammar is Graph's 400 ``Request_UnsupportedQuery``."""
    try:
        tree = _parser().parse(text)
        node = _Compile().transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, GraphApiError):
            raise exc.orig_exc from exc
        raise unsupported_query(f"Invalid filter clause: {text}") from exc
    except lark.exceptions.LarkError as exc:
        raise unsupported_query(f"Invalid filter clause: {text}") from exc
    if not isinstance(node, _Node):  # a bare value or path is not a filter
        raise unsupported_query(f"Invalid filter clause: {text}")
    test = node.test
    empty: Mapping[str, Any] = {}
    return Filter(lambda obj: test(obj, empty), ids=node.ids, advanced=node.advanced, ids_only=node.ids_only)


def apply_filter(flt: Filter | None, objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if flt is None:
        return list(objects)
    return [o for o in objects if flt.predicate(o)]


def check_advanced(flt: Filter | None, consistency_eventual: bool, count_requested: bool) -> None:
    """Graph's rule: advanced filter operators need ``ConsistencyLevel: eventual`` and ``$count=true``."""
    if flt is not None and flt.advanced and not (consistency_eventual and count_requested):
        raise unsupported_query(
            "Operator not supported without ConsistencyLevel: eventual and $count=true (advanced query)."
        )
