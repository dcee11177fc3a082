"""Graph JSON → model values."""

from __future__ import annotations

from writeback.adapters.graph.convert import group_from_graph, member_changes, removed_reason, user_from_graph
from writeback.core.model import MemberRef


def test_user_known_properties_are_fields_and_the_rest_attributes() -> None:
    user = user_from_graph(
        {
            "@odata.type": "#microsoft.graph.user",
            "id": "u1",
            "displayName": "Ada",
            "userPrincipalName": "ada@contoso.com",
            "accountEnabled": True,
            "onPremisesSyncEnabled": True,
            "onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-1105",
            "onPremisesImmutableId": "nofCJe0gZk6D8J4gRgrt+A==",
            "onPremisesDistinguishedName": "CN=Ada,OU=Users,DC=contoso,DC=com",
            "onPremisesDomainName": "contoso.com",
            "department": "Sales",
            "onPremisesExtensionAttributes": {"extensionAttribute1": "x"},
        }
    )
    assert user.id == "u1" and user.display_name == "Ada" and user.account_enabled is True
    assert user.on_premises_security_identifier == "S-1-5-21-1-2-3-1105"
    assert user.on_premises_immutable_id == "nofCJe0gZk6D8J4gRgrt+A=="
    assert user.on_premises_domain_name == "contoso.com"
    assert user.is_synced and not user.deleted
    assert user.attributes == {
        "department": "Sales",
        "onPremisesExtensionAttributes": {"extensionAttribute1": "x"},
    }


def test_group_with_beta_writeback_configuration() -> None:
    group = group_from_graph(
        {
            "id": "g1",
            "displayName": "Sales",
            "description": None,
            "mailNickname": "sales",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": ["DynamicMembership"],
            "membershipRule": 'user.department -eq "Sales"',
            "membershipRuleProcessingState": "On",
            "onPremisesSyncEnabled": None,
            "writebackConfiguration": {"isEnabled": True, "onPremisesGroupType": "universalSecurityGroup"},
            "isAssignableToRole": False,
            "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u1"}],
        },
        deleted=True,
    )
    assert group.group_types == ("DynamicMembership",) and group.is_dynamic
    assert group.membership_rule == 'user.department -eq "Sales"'
    assert group.writeback_enabled is True and group.writeback_group_type == "universalSecurityGroup"
    assert group.attributes == {"isAssignableToRole": False}
    assert group.members == frozenset() and group.deleted


def test_group_defaults_for_missing_or_null_properties() -> None:
    group = group_from_graph({"id": "g2", "displayName": None, "securityEnabled": None, "groupTypes": None})
    # securityEnabled unknown stays unknown: scope treats it as out of scope (fail closed).
    assert group.display_name == "" and group.security_enabled is None and group.mail_enabled is False
    assert group.group_types == () and group.writeback_enabled is None and group.writeback_group_type is None


def test_removed_reason_and_member_changes() -> None:
    assert removed_reason({"id": "x", "@removed": {"reason": "deleted"}}) == "deleted"
    assert removed_reason({"id": "x", "@removed": {"reason": "changed"}}) == "changed"
    assert removed_reason({"id": "x", "@removed": {}}) == "changed"
    assert removed_reason({"id": "x"}) is None
    changes = list(
        member_changes(
            {
                "members@delta": [
                    {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                    {"@odata.type": "#microsoft.graph.group", "id": "g9", "@removed": {"reason": "deleted"}},
                    {"@odata.type": "#microsoft.graph.device", "id": "d1"},
                    {"id": "u2"},
                ]
            }
        )
    )
    assert changes == [
        (True, MemberRef("user", "u1")),
        (False, MemberRef("group", "g9")),
        (True, MemberRef("device", "d1")),
        (True, MemberRef("user", "u2")),
    ]


def test_group_dates_reach_mapping_expressions() -> None:
    """createdDateTime is selected (GROUP_SELECT) and kept for expressions such as FormatDateTime."""
    from writeback.adapters.graph.settings import GraphSettings
    from writeback.core.expressions import compile_expression
    from writeback.core.mapping import group_source

    assert {"createdDateTime", "expirationDateTime", "renewedDateTime"} <= set(
        GraphSettings(tenant_id="t", client_id="c", client_secret="s").group_select
    )
    group = group_from_graph({"id": "g", "displayName": "G", "createdDateTime": "2020-03-16T07:00:00Z"})
    created = compile_expression('FormatDateTime(CDate([createdDateTime]), , , "yyyy-MM-dd")')
    assert created.evaluate(group_source(group)) == "2020-03-16"


def test_converting_a_malformed_object_names_its_id_and_field() -> None:
    """Graph JSON becomes a model value only when every property writeback reads has its documented type."""
    import pytest

    from writeback.adapters.graph.convert import MalformedObjectError
    from writeback.errors import SourceError

    with pytest.raises(MalformedObjectError) as caught:
        group_from_graph({"id": "g1", "displayName": 12})
    assert isinstance(caught.value, SourceError)
    assert (caught.value.object_id, caught.value.field) == ("g1", "displayName")
    assert "g1" in str(caught.value) and "displayName" in str(caught.value) and "int" in str(caught.value)
    with pytest.raises(MalformedObjectError, match="groupTypes"):
        group_from_graph({"id": "g1", "groupTypes": "Unified"})
    with pytest.raises(MalformedObjectError, match="securityEnabled"):
        group_from_graph({"id": "g1", "securityEnabled": "false"})
    with pytest.raises(MalformedObjectError) as caught:
        user_from_graph({"id": 7, "displayName": "Ada"})
    assert (caught.value.object_id, caught.value.field) == (None, "id")
    with pytest.raises(MalformedObjectError, match="accountEnabled"):
        user_from_graph({"id": "u1", "accountEnabled": "true"})
    # Properties writeback does not read are kept as they came (rules see Graph's own JSON).
    assert group_from_graph({"id": "g1", "theme": 5}).attributes == {"theme": 5}


def test_member_delta_reports_malformed_entries_and_keeps_the_others() -> None:
    from writeback.adapters.graph.convert import member_delta

    changes, problems = member_delta(
        {
            "id": "g1",
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                {"@odata.type": "#microsoft.graph.user"},
                {"@odata.type": "#microsoft.graph.user", "id": ["u2"]},
                {"id": "u3", "@removed": {"reason": "deleted"}},
            ],
        }
    )
    assert changes == [(True, MemberRef("user", "u1")), (False, MemberRef("user", "u3"))]
    assert [(p.field, p.problem) for p in problems] == [
        ("members@delta[1].id", "missing, expected a non-empty string"),
        ("members@delta[2].id", "a list, expected a non-empty string"),
    ]


def test_member_entries_taken_at_once_are_those_the_rule_accepts() -> None:
    """member_delta takes a plain added member without asking member_problem: only entries the rule accepts."""
    from writeback.adapters.graph.convert import _plain_add, member_delta
    from writeback.adapters.graph.validate import member_problem

    entries = [
        {"@odata.type": "#microsoft.graph.user", "id": "u1"},
        {"id": "u2"},
        {"@odata.type": None, "id": "u3"},
        {"@odata.type": 5, "id": "u4"},
        {"id": ""},
        {"id": None},
        {"id": "u5", "@removed": {"reason": "changed"}},
        {"id": "u6", "@removed": "gone"},
        {"id": "u7", "@removed": None},
        ["id", "u8"],
        "u9",
    ]
    taken = [e for e in entries if _plain_add(e)]
    assert taken == [entries[0], entries[1], entries[8]]
    assert all(member_problem(e, 0) is None for e in taken)
    changes, problems = member_delta({"id": "g1", "members@delta": entries})
    assert [(added, ref.id) for added, ref in changes] == [
        (True, "u1"),
        (True, "u2"),
        (True, "u3"),
        (False, "u5"),
        (True, "u7"),
    ]
    assert len(problems) == len(entries) - len(changes)


def test_the_user_properties_the_users_mappings_read_are_type_checked() -> None:
    """[users] writes givenName, surname, … into AD accounts: a malformed value skips that user (per-object
    error) instead of reaching a mapping expression."""
    import pytest

    from writeback.adapters.graph.convert import MalformedObjectError
    from writeback.config import DEFAULT_USER_ATTRIBUTES

    read = {"givenName", "surname", "postalCode", "streetAddress", "mobilePhone", "preferredLanguage"}
    assert all(any(f"[{p}]" in e for e in DEFAULT_USER_ATTRIBUTES.values()) for p in read)
    for prop in sorted(read):
        with pytest.raises(MalformedObjectError, match=prop):
            user_from_graph({"id": "u1", prop: {"not": "a string"}})
        assert user_from_graph({"id": "u1", prop: "fine"}).attributes[prop] == "fine"
