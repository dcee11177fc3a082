"""The Entra ID dynamic membership rule language: parse once, evaluate against Graph-shaped user dicts.

>>> rule = compile_rule('user.department -eq "Sales" -and user.accountEnabled -eq true')
>>> rule.matches({"department": "sales", "accountEnabled": True})
True

Pure code: no I/O. Errors are :class:`~writeback.errors.RuleError` with the 0-based ``position``.
"""

from writeback.core.rules.compiled import CompiledRule, compile_rule
from writeback.core.rules.context import RuleContext
from writeback.core.rules.explain import Explanation, Step
from writeback.core.rules.parser import MAX_RULE_LENGTH
from writeback.errors import RuleError

__all__ = [
    "MAX_RULE_LENGTH",
    "CompiledRule",
    "Explanation",
    "RuleContext",
    "RuleError",
    "Step",
    "compile_rule",
]
