"""Where dynamic-group rules get evaluated: a pluggable compile function.

The rule language lives in :mod:`writeback.rules` (``compile_rule(text) -> CompiledRule`` with
``CompiledRule.matches(user_json) -> bool``), written separately. The emulator only needs "rule text in,
predicate on a Graph user dict out", so it takes any such function; :func:`default_rule_compiler` wires the
real one when it is importable and otherwise returns None, which leaves dynamic groups' members as loaded
(empty for a generated tenant) instead of guessing.

TODO(lead): ``Direct Reports for`` works from the user's ``manager`` key; ``user.memberOf`` rules need a
``RuleContext(member_of=...)`` and recomputation when the referenced groups change, which the emulator does
not do yet: such rules evaluate to "no member" (the RuleError is caught in ``Tenant._safe_match``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

RuleMatcher = Callable[[Mapping[str, Any]], bool]
RuleCompiler = Callable[[str], RuleMatcher]


def _from_rules_module(module: Any) -> RuleCompiler | None:
    compile_rule = getattr(module, "compile_rule", None)
    if not callable(compile_rule):
        return None

    def compiler(text: str) -> RuleMatcher:
        compiled = compile_rule(text)  # raises writeback.errors.RuleError on a bad rule
        matches: RuleMatcher = compiled.matches
        return matches

    return compiler


def default_rule_compiler() -> RuleCompiler | None:
    """``writeback.rules.compile_rule`` adapted to :data:`RuleCompiler`, or None when it is not available."""
    try:
        module = importlib.import_module("writeback.rules")
    except ImportError:
        return None
    return _from_rules_module(module)
