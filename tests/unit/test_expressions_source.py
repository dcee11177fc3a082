"""One :class:`Source` for several expressions over one object: the same results as a plain mapping, with the
case-folded index of its attribute names built once for the object, not once per expression (the user mappings
of a plan evaluate a dozen expressions per cloud-only member, most naming an attribute the user lacks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from writeback.core.expressions import Source, compile_expression
from writeback.core.mapping import UserMapper, user_source
from writeback.core.model import CloudUser


class _Counted(dict[str, Any]):
    """A dict that counts full scans (what building the case-folded index costs)."""

    scans = 0

    def items(self) -> Any:
        type(self).scans += 1
        return super().items()

    def __iter__(self) -> Iterator[str]:
        type(self).scans += 1
        return super().__iter__()


TEXTS = ("[givenName]", "[GIVENNAME]", "[mailNickname]", 'Join(" ", [Surname], [department])', "[objectId]")


def test_one_source_gives_the_plain_mappings_results_and_folds_names_once():
    data = {"givenName": "Julia", "surname": "Keller", "department": None, "objectId": "id-1"}
    exprs = [compile_expression(t) for t in TEXTS]
    expected = [e.evaluate(dict(data)) for e in exprs]
    assert expected == ["Julia", "Julia", None, "Keller", "id-1"]

    _Counted.scans = 0
    counted = _Counted(data)
    shared = Source(counted)
    assert [e.evaluate(shared) for e in exprs] == expected
    assert [e.evaluate_values(shared) for e in exprs] == [((v,) if v else ()) for v in expected]
    assert _Counted.scans == 1, "the case-folded index is built once for the object"

    _Counted.scans = 0
    assert [e.evaluate(counted) for e in exprs] == expected  # a plain mapping: a Source per evaluation
    assert _Counted.scans > 1
    assert Source.of(shared) is shared


def test_the_user_mappings_are_those_of_a_fresh_source_per_expression():
    user = CloudUser(
        "11111111-0000-0000-0000-000000000001",
        display_name="Julia Keller",
        user_principal_name="julia.keller@contoso.example",
        account_enabled=True,
        attributes={"givenName": "Julia", "surname": "Keller", "department": "Treasury"},
    )
    mapper = UserMapper(
        {
            "givenName": "[GivenName]",
            "sn": "[surname]",
            "department": "[DEPARTMENT]",
            "mail": "[mail]",
            "description": 'Append("id ", [objectid])',
        }
    )
    got = mapper.member_intent(user, "OU=Cloud Users,DC=corp,DC=test").attributes
    one_by_one = {
        a: compile_expression(t).evaluate(user_source(user)) or None for a, t in mapper.attributes.items()
    }
    assert got == one_by_one
    assert got["givenName"] == "Julia" and got["department"] == "Treasury" and got["mail"] is None
    assert got["description"] == f"id {user.id}"
