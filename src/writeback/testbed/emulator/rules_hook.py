"""Where dynamic-group rules get evaluated: a pluggable compile function.

The rule language lives in :mod:`writeback.core.rules` (``compile_rule(text) -> CompiledRule`` with
``CompiledRule.matches(user_json) -> bool``), written separately. The emulator only needs "rule text in,
predicate on a Graph user dict out", so it takes any such function; :func:`default_rule_compiler` wires the
real one (a tenant built without a compiler keeps dynamic groups' members as loaded instead of guessing).

``Direct Reports for`` works from the user's ``manager`` key. ``user.memberOf`` rules read the groups the user
is a direct member of: a matcher that needs them has ``reads_member_of`` set, and the tenant passes them in
the user's ``memberOf`` key and re-evaluates such groups whenever another group's members change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from writeback.core import rules

RuleMatcher = Callable[[Mapping[str, Any]], bool]
RuleCompiler = Callable[[str], RuleMatcher]


def _from_rules_module(module: Any) -> RuleCompiler | None:
    compile_rule = getattr(module, "compile_rule", None)
    if not callable(compile_rule):
        return None

    def compiler(text: str) -> RuleMatcher:
        return _Matcher(compile_rule(text))  # raises writeback.errors.RuleError on a bad rule

    return compiler


class _Matcher:
    """A compiled rule as a predicate on a Graph user dict, saying whether it reads ``memberOf``."""

    def __init__(self, compiled: Any) -> None:
        self._matches = compiled.matches
        self.reads_member_of = getattr(compiled, "special", None) == "memberOf"

    def __call__(self, user: Mapping[str, Any]) -> bool:
        return bool(self._matches(user))


def reads_member_of(matcher: RuleMatcher) -> bool:
    """Whether ``matcher`` needs the user's direct group memberships in its ``memberOf`` key."""
    return bool(getattr(matcher, "reads_member_of", False))


def default_rule_compiler() -> RuleCompiler | None:
    """``writeback.core.rules.compile_rule`` adapted to :data:`RuleCompiler`."""
    return _from_rules_module(rules)
