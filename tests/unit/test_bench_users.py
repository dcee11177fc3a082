"""The pure parts of ``scripts/bench users``: its tenant, its checks, the limit's copies and its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from benchmarks.bench import report
from benchmarks.bench.ldaptools import GroupEntry
from benchmarks.bench.users import users_config
from benchmarks.bench.users_limit import AccountEntry, account_modlist, password_value
from benchmarks.bench.users_report import markdown, ratios
from benchmarks.bench.users_tenant import USERS_SIZES, UsersSize, generate_users_tenant, group_of
from benchmarks.bench.users_verify import check_accounts, check_groups

from writeback.config import DEFAULT_USER_ATTRIBUTES, load_settings


def _tenant(members: int = 20, groups: int = 4) -> Any:
    return generate_users_tenant(
        UsersSize("t", members, groups), tenant_id="t", client_id="c", client_secret="s"
    )


def test_the_sizes_are_the_issues() -> None:
    assert (USERS_SIZES["medium"].members, USERS_SIZES["medium"].groups) == (20_000, 2_000)
    assert (USERS_SIZES["large"].members, USERS_SIZES["large"].groups) == (100_000, 10_000)


def test_every_member_is_cloud_only_in_a_group_and_every_fifth_in_two() -> None:
    gen = _tenant(20, 4)
    users = gen.document["users"]
    assert len(users) == 20 and all("onPremisesSecurityIdentifier" not in u for u in users)
    assert all(u["accountEnabled"] and u["userType"] == "Member" for u in users)
    # The properties Cloud Sync's default mappings read are there, so every default attribute is written.
    assert {"givenName", "surname", "department", "companyName", "city", "country", "employeeId"} <= users[
        0
    ].keys()
    assert len({u["userPrincipalName"].lower() for u in users}) == 20
    held = {uid: sum(uid in m for m in gen.members.values()) for uid in gen.member_ids}
    assert [held[uid] for uid in gen.member_ids] == [2 if i % 5 == 0 else 1 for i in range(20)]
    assert gen.memberships == 24
    assert all(g["members"] == gen.members[g["id"]] for g in gen.document["groups"])
    assert group_of(5, 4) == [1, 3] and group_of(5, 1) == [0]


def test_the_tenant_is_the_same_every_time() -> None:
    assert _tenant().document == _tenant().document


def test_a_size_with_fewer_members_than_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="one member per group"):
        _tenant(3, 4)


def _account(
    uid: str, prefix: str = "User_", pwd: int = 133_000_000_000_000_000, **extra: Any
) -> AccountEntry:
    anchor = f"{prefix}{uid}".encode()
    attrs = {"msDS-ExternalDirectoryObjectId": [anchor], "adminDescription": [anchor], **extra}
    return AccountEntry(f"CN={uid},OU=A,DC=x", attrs, pwd)


def test_accounts_check_finds_missing_duplicate_unanchored_and_passwordless_accounts() -> None:
    good = [_account("a"), _account("b")]
    assert check_accounts(good, ["a", "b"], "User_") == []
    problems = check_accounts(
        [_account("a"), _account("a"), _account("c", pwd=0), _account("d", prefix="Copy_")],
        ["a", "b", "c"],
        "User_",
    )
    assert "member a: 2 accounts" in problems
    assert "member b: no account" in problems
    assert "CN=c,OU=A,DC=x: no password set (pwdLastSet 0)" in problems
    assert any("'Copy_d' does not start with 'User_'" in p for p in problems)
    half = AccountEntry("CN=e,OU=A,DC=x", {"msDS-ExternalDirectoryObjectId": [b"User_e"]}, 1)
    assert "expected one User_<id> in each of both" in check_accounts([half], ["e"], "User_")[0]


def test_groups_check_compares_the_members_accounts() -> None:
    accounts = [_account("a"), _account("b")]
    group = GroupEntry("CN=G,OU=G,DC=x", {"msDS-ExternalDirectoryObjectId": [b"Group_g"]}, ["cn=a,ou=a,dc=x"])
    assert check_groups([group], accounts, {"g": ["a"]}, "Group_", "User_") == []
    (problem,) = check_groups([group], accounts, {"g": ["a", "b"]}, "Group_", "User_")
    assert problem.startswith("group g: 1 members in AD, expected 2 (missing ['b']")
    assert check_groups([], accounts, {"g": ["a"]}, "Group_", "User_") == ["group g missing in AD"]


def test_the_limit_copies_every_attribute_with_its_own_anchor_and_never_reuses_a_password() -> None:
    account = _account("a", sAMAccountName=[b"jdoe1"], displayName=[b"J Doe"], userAccountControl=[b"512"])
    modlist = dict(account_modlist(account))
    assert modlist["msDS-ExternalDirectoryObjectId"] == [b"Copy_a"] == modlist["adminDescription"]
    assert modlist["sAMAccountName"] == [b"jdoe1"] and modlist["userAccountControl"] == [b"512"]
    assert b"user" in modlist["objectClass"] and "unicodePwd" not in modlist
    one, two = password_value(), password_value()
    assert one != two and one.startswith('"'.encode("utf-16-le")) and len(one.decode("utf-16-le")) == 66


def test_ratios_are_engine_over_limit() -> None:
    assert ratios(150.0, 120.0, 100.0) == {
        "ratio_users_engine_limit": 1.5,
        "ratio_users_apply_phase_limit": 1.2,
    }
    assert ratios(1.0, 1.0, 0.0)["ratio_users_engine_limit"] is None


def _result(size: str = "medium") -> dict[str, Any]:
    return {
        "kind": "users",
        "size": size,
        "date": "2026-12-07T05:00:00+00:00",
        "tenant": {"cloud_only_members": 20_000, "groups": 2_000, "memberships": 24_000},
        "first_apply": {
            "wall_s": 300.0,
            "phases_s": {"sync": 5.0, "plan": 20.0, "apply": 270.0},
            "ldap": {"add": 22_000, "modify": 2_000, "search": 50, "bind": 2},
        },
        "limit": {"wall_s": 250.0, "ldap": {"add": 22_000, "modify": 0}, "accounts": 20_000, "groups": 2_000},
        **ratios(300.0, 270.0, 250.0),
        "checks": {"engine_accounts_exact": True, "limit_groups_exact": False},
    }


def test_the_section_gives_both_sides_and_the_ratio() -> None:
    text = markdown(_result())
    assert "### Users: accounts for cloud-only members (medium," in text
    assert "| **Engine / limit** (whole apply; write phase) | 1.20; 1.08 |" in text
    assert "|   LDAP operations | 22,000 add, 2,000 modify, 50 search, 2 bind |" in text
    assert "| Checks FAILED | limit_groups_exact |" in text


def test_each_size_has_its_own_file_and_section_next_to_the_other_results(tmp_path: Path) -> None:
    report.save(tmp_path, {"size": "small", "tenant": {}, "checks": {}})
    table = report.markdown(report.save(tmp_path, _result("medium")))
    saved = json.loads((tmp_path / "bench-users-medium.json").read_text())
    assert saved["ratio_users_engine_limit"] == 1.2
    assert set(json.loads((tmp_path / "bench.json").read_text())) == {"small", "users-medium"}
    assert "| | small |" in table and "### Users: accounts for cloud-only members (medium" in table


def test_the_engine_config_creates_accounts_in_its_own_ou(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    secret = tmp_path / "pw"
    secret.write_text("x")
    config.write_text(
        "[scope]\nmode = 'none'\n"
        f"[target]\nldap_urls = ['ldaps://dc']\nbind_dn = 'CN=a,DC=x'\nbind_password_file = '{secret}'\n"
        "base_dn = 'OU=Run,DC=x'\ntarget_ou = 'OU=Groups,OU=Run,DC=x'\n"
        + users_config("OU=Accounts,OU=Run,DC=x")
    )
    settings = load_settings(config)
    assert settings.users.creates_accounts and settings.users.target_ou == "OU=Accounts,OU=Run,DC=x"
    assert dict(settings.users.attributes) == dict(DEFAULT_USER_ATTRIBUTES)


def test_scripts_bench_users_help_names_the_sizes_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["users", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "usage: scripts/bench users" in text and "{small,medium,large}" in text
    for option in ("--out", "--sandbox-dir", "--scratch-sandbox", "--keep-sandbox", "--profile"):
        assert option in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "scripts/bench users [size]" in capsys.readouterr().out
