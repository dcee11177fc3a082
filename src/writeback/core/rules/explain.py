"""Why a rule matched a user or not: every comparison with the property, the actual value and the result.

Explanations re-run the compiled predicates of each part (never a second implementation), so what they say
is what ``matches`` decides. They are for people and logs, not the hot path: every part is evaluated, without
short-circuiting, so the explanation is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from writeback.core.rules.context import Env
from writeback.core.rules.evaluator import CompiledNode
from writeback.core.rules.nodes import And, Comparison, DirectReports, MemberOf, Not, Or, Quantified

MAX_ITEMS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Step:
    """One part of the rule: its source text, kind, result and (for comparisons) property and actual value."""

    text: str
    kind: str  # "comparison", "and", "or", "not", "any", "all", "directReports", "memberOf", "item"
    result: bool
    property: str | None = None
    actual: Any = None
    children: tuple[Step, ...] = ()

    def lines(self, depth: int = 0) -> list[str]:
        mark = "✓" if self.result else "✗"
        pad = "  " * depth
        if self.kind in ("and", "or", "not"):
            head = f"{pad}{mark} {self.kind.upper()}"
        elif self.property is not None:
            head = f"{pad}{mark} {self.text}    [{self.property} = {_show(self.actual)}]"
        else:
            head = f"{pad}{mark} {self.text}"
        out = [head]
        for child in self.children:
            out.extend(child.lines(depth + 1))
        return out


@dataclass(frozen=True, slots=True)
class Explanation:
    """The result of a rule for one object, with the reasoning as a tree of :class:`Step`."""

    rule: str
    matched: bool
    root: Step

    def __bool__(self) -> bool:
        return self.matched

    def comparisons(self) -> list[Step]:
        """Every leaf step (comparisons and special rules), in rule order."""
        found: list[Step] = []

        def walk(step: Step) -> None:
            if not step.children:
                found.append(step)
            for child in step.children:
                walk(child)

        walk(self.root)
        return found

    def __str__(self) -> str:
        verdict = "matches" if self.matched else "does not match"
        return "\n".join([f"Rule {verdict}: {self.rule}", *self.root.lines(1)])


def explain(rule: str, compiled: CompiledNode, obj: Any, env: Env) -> Explanation:
    root = _step(rule, compiled, obj, env)
    return Explanation(rule, root.result, root)


def _step(rule: str, c: CompiledNode, obj: Any, env: Env) -> Step:
    node = c.node
    text = rule[node.span.start : node.span.end]
    if isinstance(node, And | Or):
        children = tuple(_step(rule, child, obj, env) for child in c.children)
        combine = all if isinstance(node, And) else any
        return Step(
            text,
            "and" if isinstance(node, And) else "or",
            combine(s.result for s in children),
            None,
            None,
            children,
        )
    if isinstance(node, Not):
        inner = _step(rule, c.children[0], obj, env)
        return Step(text, "not", not inner.result, None, None, (inner,))
    if isinstance(node, Quantified) and c.item_body is not None:
        assert c.getter is not None
        value = c.getter(obj)
        items = value if isinstance(value, list | tuple) else ([] if value is None else [value])
        item_steps = []
        for index, item in enumerate(items[:MAX_ITEMS_SHOWN]):
            inner = _step(rule, c.item_body, item, env)
            item_steps.append(
                Step(f"item {index}: {_show(item)}", "item", inner.result, None, None, (inner,))
            )
        return Step(text, node.quantifier, c.fn(obj, env), c.label, value, tuple(item_steps))
    kind = (
        "comparison"
        if isinstance(node, Comparison)
        else "directReports"
        if isinstance(node, DirectReports)
        else "memberOf"
    )
    assert isinstance(node, Comparison | DirectReports | MemberOf)
    actual = c.getter(obj) if c.getter is not None else None
    label = c.label if c.label != "_" else "_"
    return Step(text, kind, c.fn(obj, env), label, actual)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, frozenset | set):
        value = sorted(value)
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
