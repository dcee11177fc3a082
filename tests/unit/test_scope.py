from writeback.config import FilterClause, ScopeSettings
from writeback.core.model import CloudGroup
from writeback.core.scope import out_of_scope_reason, select_in_scope


def g(gid="g", **kw):
    return CloudGroup(gid, display_name=kw.pop("name", "G"), **kw)


def test_default_scope_is_cloud_security_groups_assigned_or_dynamic():
    s = ScopeSettings()
    assert out_of_scope_reason(g(), s) is None
    assert out_of_scope_reason(g(group_types=("DynamicMembership",)), s) is None
    assert "synced from AD" in out_of_scope_reason(g(on_premises_sync_enabled=True), s)
    assert "mail-enabled" in out_of_scope_reason(g(mail_enabled=True), s)
    assert out_of_scope_reason(g(security_enabled=False), s) == "not a security group"
    assert out_of_scope_reason(g(group_types=("Unified",), mail_enabled=True), s)
    assert out_of_scope_reason(g(deleted=True), s) == "soft-deleted in the cloud"


def test_selected_mode():
    s = ScopeSettings(mode="selected", group_ids=("a",))
    assert select_in_scope({"a": g("a"), "b": g("b")}, s).keys() == {"a"}


def test_writeback_enabled_mode_null_means_false_for_security_groups():
    s = ScopeSettings(mode="writeback_enabled")
    assert out_of_scope_reason(g(writeback_enabled=True), s) is None
    assert out_of_scope_reason(g(writeback_enabled=None), s)
    assert out_of_scope_reason(g(writeback_enabled=False), s)


def test_filters_and_within_or_across():
    f1 = (FilterClause("displayName", "STARTS_WITH", "SG-"), FilterClause("description", "IS_NOT_NULL"))
    f2 = (FilterClause("displayName", "REGEX_MATCH", "^DSG-.*SAP$"),)
    s = ScopeSettings(filters=(f1, f2))
    assert out_of_scope_reason(g(name="SG-Fin", description="x"), s) is None
    assert out_of_scope_reason(g(name="SG-Fin"), s) == "no scope filter matches"
    assert out_of_scope_reason(g(name="DSG-AVD-PUBAPP-SAP"), s) is None
    assert out_of_scope_reason(g(name="Other"), s)


def test_filter_operators_on_extra_attributes():
    grp = g(attributes={"classification": "Confidential", "size": "12"})
    assert (
        out_of_scope_reason(
            grp, ScopeSettings(filters=((FilterClause("classification", "EQUALS", "confidential"),),))
        )
        is None
    )
    assert out_of_scope_reason(
        grp, ScopeSettings(filters=((FilterClause("classification", "NOT_EQUALS", "confidential"),),))
    )
    assert (
        out_of_scope_reason(grp, ScopeSettings(filters=((FilterClause("size", "GREATER_THAN", "9"),),)))
        is None
    )
    assert out_of_scope_reason(grp, ScopeSettings(filters=((FilterClause("missing", "IS_NULL"),),))) is None
    assert (
        out_of_scope_reason(
            g(security_enabled=True), ScopeSettings(filters=((FilterClause("securityEnabled", "IS_TRUE"),),))
        )
        is None
    )


def test_missing_security_enabled_is_out_of_scope_fail_closed():
    """A group Graph did not say is a security group is never written, in every mode, filters or not."""
    unknown = g(security_enabled=None)
    for s in (
        ScopeSettings(),
        ScopeSettings(mode="selected", group_ids=("g",)),
        ScopeSettings(filters=((FilterClause("displayName", "EQUALS", "G"),),)),
    ):
        assert (
            out_of_scope_reason(unknown, s)
            == "securityEnabled is missing (out of scope until Graph reports it)"
        )
        assert select_in_scope({"g": unknown}, s) == {}
    assert out_of_scope_reason(g(security_enabled=True), ScopeSettings()) is None
