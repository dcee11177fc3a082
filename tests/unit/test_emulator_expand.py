"""The emulator's ``$expand`` parser (pure): one relationship the emulator expands, a nested ``$select``,
Graph's errors for the rest. The HTTP side is tests/integration/test_emulator_expand.py."""

from __future__ import annotations

import pytest

from writeback.testbed.emulator.apierror import GraphApiError
from writeback.testbed.emulator.odata import Expand, parse_expand


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("members", Expand("members")),
        ("members()", Expand("members")),
        ("members($select=id,displayName)", Expand("members", ("id", "displayName"))),
        ("members($select=id, displayName)", Expand("members", ("id", "displayName"))),
    ],
)
def test_members_with_or_without_a_nested_select(text: str | None, expected: Expand | None) -> None:
    assert parse_expand(text, "group", "v1.0") == expected


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("members,owners", 400, "BadRequest"),
        ("members($select=id),members", 400, "BadRequest"),
        ("members($select=id", 400, "BadRequest"),
        ("*", 400, "BadRequest"),
        ("mail", 400, "Request_BadRequest"),
        ("nothing", 400, "Request_BadRequest"),
        ("members($orderby=displayName)", 400, "Request_UnsupportedQuery"),
        ("transitiveMembers", 400, "Request_UnsupportedQuery"),
        ("members($select=)", 400, "Request_BadRequest"),
    ],
)
def test_what_graph_refuses(text: str, status: int, code: str) -> None:
    with pytest.raises(GraphApiError) as info:
        parse_expand(text, "group", "v1.0")
    assert (info.value.status, info.value.code) == (status, code)


def test_a_user_has_nothing_the_emulator_expands() -> None:
    with pytest.raises(GraphApiError) as info:
        parse_expand("members", "user", "v1.0")
    assert "Could not find a property named 'members' on type 'microsoft.graph.user'" in info.value.message
