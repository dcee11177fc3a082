"""The public face of the rule engine: :func:`compile_rule` and :class:`CompiledRule`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Literal, TypeVar

from writeback.core.rules.context import Env, RuleContext
from writeback.core.rules.evaluator import CompiledNode, Compiler
from writeback.core.rules.explain import Explanation, explain
from writeback.core.rules.parser import parse
from writeback.errors import RuleError

T = TypeVar("T", bound=Mapping[str, Any])


class CompiledRule:
    """A parsed and checked rule, ready to evaluate many users quickly. Immutable and thread-safe.

    ``kind`` is "user" or "device"; ``special`` is None, "directReports" or "memberOf" (rules that read
    relations rather than properties); ``properties`` the rule property names it reads (documented spelling,
    e.g. "department", "extensionAttribute15"); ``graph_properties`` the Graph user/device properties to
    ``$select`` so the rule can be evaluated (e.g. "id", "onPremisesExtensionAttributes", "manager");
    ``warnings`` what is valid but likely a mistake (an unknown property, with the closest known one), for
    ``rules check``/``rules test`` and the config's dynamic groups to show.
    """

    __slots__ = ("_root", "graph_properties", "kind", "properties", "special", "text", "warnings")

    def __init__(
        self,
        text: str,
        root: CompiledNode,
        kind: Literal["user", "device"],
        special: Literal["directReports", "memberOf"] | None,
        properties: frozenset[str],
        graph_properties: frozenset[str],
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.text = text
        self.warnings = warnings
        self._root = root
        self.kind = kind
        self.special = special
        self.properties = properties
        self.graph_properties = graph_properties

    def matches(self, user: Mapping[str, Any], context: RuleContext | None = None) -> bool:
        """True when ``user`` (Graph-shaped dict) satisfies the rule.

        Raises RuleError when a special rule lacks its input (no ``manager``/``memberOf`` on the user and no
        RuleContext to ask): guessing "no" there would silently empty a group.
        """
        try:
            return self._root.fn(user, Env.create(context))
        except RuleError as exc:
            raise self._with_rule(exc) from exc

    def filter(self, users: Iterable[T], context: RuleContext | None = None) -> list[T]:
        """The users that satisfy the rule, in order. One clock reading and memo for the whole batch."""
        env = Env.create(context)
        fn = self._root.fn
        try:
            return [user for user in users if fn(user, env)]
        except RuleError as exc:
            raise self._with_rule(exc) from exc

    def explain(self, user: Mapping[str, Any], context: RuleContext | None = None) -> Explanation:
        """Why ``user`` matches or not; ``str()`` of the result is a readable tree."""
        try:
            return explain(self.text, self._root, user, Env.create(context))
        except RuleError as exc:
            raise self._with_rule(exc) from exc

    def _with_rule(self, exc: RuleError) -> RuleError:
        """Evaluation errors are raised deep in closures that do not know the rule text; add it here."""
        if exc.rule is not None:
            return exc
        return RuleError(f"{exc} (rule: {self.text})", position=exc.position, rule=self.text)

    def __repr__(self) -> str:
        return f"CompiledRule({self.text!r})"


def compile_rule(text: str) -> CompiledRule:
    """Parse and check ``text`` once; raises :class:`~writeback.errors.RuleError` (with position) if invalid.

    Compiled rules are cached by text, so calling this for every group on every pass costs a dict lookup.
    """
    return _compile_cached(text)


@lru_cache(maxsize=2048)
def _compile_cached(text: str) -> CompiledRule:
    compiler = Compiler(text)
    root = compiler.compile_root(parse(text))
    kind: Literal["user", "device"] = "device" if compiler.kind == "device" else "user"
    special: Literal["directReports", "memberOf"] | None = None
    if compiler.special == "directReports":
        special = "directReports"
    elif compiler.special == "memberOf":
        special = "memberOf"
    return CompiledRule(
        text,
        root,
        kind,
        special,
        frozenset(compiler.properties),
        frozenset(compiler.graph_properties),
        tuple(compiler.warnings),
    )
