"""The sandbox: a real Samba AD DC on loopback plus the Graph emulator, as `writeback sandbox up` leaves them.

Tests marked ``samba`` run against the session's sandbox (shared or private, see tests/testbed/fixtures.py)
and only read, or write inside their own OU. The others check the pure parts (people, tenant, smb.conf,
snapshots on disk) without a DC.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
import tomllib
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
import ldap
import pytest
import yaml
from tests.testbed.fixtures import connect_as_service, delegate_to_service_account

from writeback.console.auth import hash_token, load_tokens
from writeback.errors import SandboxError
from writeback.testbed.sandbox import SandboxInfo, load_info, sandbox_status
from writeback.testbed.sandbox import snapshot as snapshot_mod
from writeback.testbed.sandbox.emulator import emulator_available
from writeback.testbed.sandbox.layout import LAYOUT_VERSION, SandboxPaths
from writeback.testbed.sandbox.lifecycle import check_directory
from writeback.testbed.sandbox.people import MAX_SAM_LENGTH, generated_people, scenario_people
from writeback.testbed.sandbox.samba import ensure_installed, relocate, set_global_options
from writeback.testbed.sandbox.seed import Account, add_all, paged_search, read_seeded, sid_to_str
from writeback.testbed.sandbox.tenant import (
    build_tenant,
    immutable_id,
    load_scenario,
    soa_user_sams,
    synced_id,
    write_tenant,
)

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-tenant.yaml"
CONTRACT_KEYS = {
    "ldap_url", "gc_url", "base_dn", "bind_dn", "bind_password", "ca_file", "users_ou", "groups_ou", "graph_url",
    "authority", "graph_ca_file", "tenant_id", "client_id", "client_secret", "config", "dir", "samba_pid",
    "emulator_pid", "emulator_admin_token", "service_bind_dn", "service_bind_password", "service_sid",
    "console_url", "console_token", "cloud_users_ou",
}  # fmt: skip
EXTERNAL_ID = "msDS-ExternalDirectoryObjectId"


def tls_connection(url: str, ca_file: Path | str) -> Any:
    conn = ldap.initialize(url)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(ca_file))
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    return conn


# --- the running sandbox -------------------------------------------------------------------------------


@pytest.mark.samba
def test_sandbox_json_holds_the_whole_contract_privately(sandbox: SandboxInfo) -> None:
    path = sandbox.dir / "sandbox.json"
    data = json.loads(path.read_text())
    assert data.keys() >= CONTRACT_KEYS
    assert data["ldap_url"] == "ldaps://127.0.0.1:636"
    assert data["gc_url"] == "ldaps://127.0.0.1:3269"
    assert data["groups_ou"] == f"OU=Writeback,{data['base_dn']}"
    assert data["cloud_users_ou"] == f"OU=Cloud Users,{data['base_dn']}"  # a public key of sandbox.json
    assert Path(data["ca_file"]).is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for secret, key in (
        ("bind_password", "bind_password"),
        ("client_secret", "client_secret"),
        ("service_password", "service_bind_password"),
    ):
        assert stat.S_IMODE((sandbox.dir / "secrets" / secret).stat().st_mode) == 0o600
        assert (sandbox.dir / "secrets" / secret).read_text().strip() == data[key]
    if data["graph_url"]:
        emulator_json = sandbox.dir / "emulator" / "emulator.json"
        assert stat.S_IMODE(emulator_json.stat().st_mode) == 0o600
        assert json.loads(emulator_json.read_text())["admin_token"] == data["emulator_admin_token"]
    assert Path(data["dir"]) == sandbox.dir
    assert load_info(sandbox.dir).bind_dn == data["bind_dn"]


@pytest.mark.samba
def test_info_repr_hides_the_secrets(sandbox: SandboxInfo) -> None:
    text = repr(sandbox)
    for secret in (
        sandbox.bind_password,
        sandbox.client_secret,
        sandbox.service_bind_password,
        sandbox.emulator_admin_token,
        sandbox.console_token,
    ):
        assert not secret or secret not in text
    assert sandbox.ldap_url in text


def bound_as_administrator(conn: Any, info: SandboxInfo) -> bool:
    """Anonymous binds cannot read an account's objectSid; Administrator can (Samba lacks the WhoAmI op)."""
    found = conn.search_s(info.bind_dn, ldap.SCOPE_BASE, attrlist=["objectSid"])
    return bool(found and found[0][1].get("objectSid"))


@pytest.mark.samba
def test_ldaps_validates_against_the_sandbox_ca(ldap_conn: Any, sandbox: SandboxInfo) -> None:
    assert bound_as_administrator(ldap_conn, sandbox)
    context = ssl.create_default_context(cafile=str(sandbox.ca_file))
    with (
        socket.create_connection(("127.0.0.1", 636), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.samba
def test_ldaps_without_the_sandbox_ca_fails_certificate_verification(sandbox: SandboxInfo) -> None:
    # libldap (GnuTLS here) reports only "Can't contact LDAP server"; the TLS handshake shows the cause.
    conn = tls_connection(sandbox.ldap_url, ssl.get_default_verify_paths().openssl_cafile)
    with pytest.raises(ldap.SERVER_DOWN):
        conn.simple_bind_s(sandbox.bind_dn, sandbox.bind_password)
    with (
        socket.create_connection(("127.0.0.1", 636), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.mark.samba
def test_starttls_on_389_validates(sandbox: SandboxInfo) -> None:
    conn = tls_connection("ldap://127.0.0.1:389", sandbox.ca_file)
    conn.start_tls_s()
    conn.simple_bind_s(sandbox.bind_dn, sandbox.bind_password)
    assert bound_as_administrator(conn, sandbox)
    conn.unbind_s()


@pytest.mark.samba
def test_global_catalog_over_tls_answers(sandbox: SandboxInfo) -> None:
    conn = tls_connection(sandbox.gc_url, sandbox.ca_file)
    conn.simple_bind_s(sandbox.bind_dn, sandbox.bind_password)
    found = conn.search_s("", ldap.SCOPE_SUBTREE, "(sAMAccountName=anna.jansen)", ["objectSid"])
    conn.unbind_s()
    assert [dn for dn, _ in found if dn] == [f"CN=Anna Jansen,{sandbox.users_ou}"]


@pytest.mark.samba
def test_external_directory_object_id_is_in_the_schema_and_allowed_on_groups(
    ldap_conn: Any, sandbox: SandboxInfo, test_ou: str
) -> None:
    schema = f"CN=Schema,CN=Configuration,{sandbox.base_dn}"
    (_, attr), *_ = ldap_conn.search_s(schema, ldap.SCOPE_ONELEVEL, f"(lDAPDisplayName={EXTERNAL_ID})")
    assert attr["attributeID"] == [b"1.2.840.113556.1.4.2310"]
    assert attr["isMemberOfPartialAttributeSet"] == [b"TRUE"]
    anchor = f"Group_{uuid.uuid4()}"
    dn = f"CN=anchored,{test_ou}"
    ldap_conn.add_s(
        dn,
        [
            ("objectClass", [b"top", b"group"]),
            ("groupType", [b"-2147483640"]),
            (EXTERNAL_ID, [anchor.encode()]),
        ],
    )
    found = ldap_conn.search_s(
        sandbox.base_dn, ldap.SCOPE_SUBTREE, f"({EXTERNAL_ID}={anchor})", [EXTERNAL_ID]
    )
    assert [(d, a[EXTERNAL_ID]) for d, a in found if d] == [(dn, [anchor.encode()])]


@pytest.mark.samba
def test_the_ou_layout_and_the_on_premises_group_exist(ldap_conn: Any, sandbox: SandboxInfo) -> None:
    ous = {
        dn
        for dn, _ in ldap_conn.search_s(
            sandbox.base_dn, ldap.SCOPE_ONELEVEL, "(objectClass=organizationalUnit)"
        )
        if dn
    }
    assert {sandbox.users_ou, sandbox.groups_ou, sandbox.onprem_groups_ou, sandbox.cloud_users_ou} <= ous
    (_dn, group), *rest = ldap_conn.search_s(
        sandbox.onprem_groups_ou, ldap.SCOPE_ONELEVEL, "(sAMAccountName=GG-Legacy-Fileshare)", ["member"]
    )
    assert not [d for d, _ in rest if d]
    assert sorted(m.decode().split(",")[0] for m in group["member"]) == [
        "CN=Ivo Dekker",
        "CN=Karin Bos",
        "CN=Lucas Vos",
    ]


@pytest.mark.samba
def test_seeded_users_carry_realistic_attributes(ldap_conn: Any, sandbox: SandboxInfo) -> None:
    users = dict(
        paged_search(
            ldap_conn,
            sandbox.users_ou,
            "(objectClass=user)",
            [
                "sAMAccountName",
                "department",
                "title",
                "mail",
                "employeeID",
                "givenName",
                "userAccountControl",
            ],
        )
    )
    fixed = len(load_scenario().directory_users)
    assert len(users) == fixed + sandbox.users
    anna = users[f"CN=Anna Jansen,{sandbox.users_ou}"]
    assert anna["department"] == [b"HR"] and anna["employeeID"] == [b"100001"]
    assert anna["mail"] == [b"anna.jansen@corp.example.test"] and anna["userAccountControl"] == [b"512"]
    assert users[f"CN=Olga Peters,{sandbox.users_ou}"]["userAccountControl"] == [b"514"]
    for entry in users.values():
        assert {"givenName", "department", "title", "mail", "employeeID"} <= entry.keys()


@pytest.mark.samba
def test_synced_cloud_users_carry_the_sid_and_immutable_id_of_their_ad_twins(
    ldap_conn: Any, sandbox: SandboxInfo
) -> None:
    tenant = yaml.safe_load(sandbox.tenant_file.read_text())  # YAML, or JSON (a subset) for big tenants
    # Synced users, and the one the sample converted to cloud source of authority (synced once: same identifiers).
    cloud = {
        u["onPremisesSamAccountName"]: u for u in tenant["users"] if u.get("onPremisesSecurityIdentifier")
    }
    ad = {a.sam: a for a in read_seeded(ldap_conn) if a.kind == "user"}
    assert cloud.keys() == ad.keys()
    for sam, account in ad.items():
        twin = cloud[sam]
        assert twin["onPremisesSecurityIdentifier"] == account.sid
        assert uuid.UUID(bytes_le=base64.b64decode(twin["onPremisesImmutableId"])) == account.object_guid
        assert twin["onPremisesDistinguishedName"] == account.dn
        assert twin["id"] == synced_id(account.object_guid)
        assert twin["accountEnabled"] is not bool(int(account.attributes["userAccountControl"][0]) & 2)
    assert cloud["olga.peters"]["accountEnabled"] is False
    assert [sam for sam, u in cloud.items() if not u.get("onPremisesSyncEnabled")] == ["nora.kok"]
    assert cloud["nora.kok"]["onPremisesSyncBehavior"] == {"isCloudManaged": True}
    assert cloud["nora.kok"]["department"] == "Treasury"  # changed in the cloud since the conversion
    assert ad["nora.kok"].attributes["department"] == ["Finance"]
    assert tenant["apps"][0]["client_secret"] == sandbox.client_secret


@pytest.mark.samba
def test_the_generated_config_points_at_the_sandbox_with_secrets_by_reference(sandbox: SandboxInfo) -> None:
    text = sandbox.config.read_text()
    config = tomllib.loads(text)
    target = config["target"]
    assert target["ldap_urls"] == [sandbox.ldap_url]
    assert target["target_ou"] == sandbox.groups_ou
    # The least-privileged service account, never Administrator.
    assert target["bind_dn"] == sandbox.service_bind_dn != sandbox.bind_dn
    assert Path(target["bind_password_file"]).read_text().strip() == sandbox.service_bind_password
    assert sandbox.service_bind_password and sandbox.service_bind_password not in text
    assert sandbox.bind_password not in text and sandbox.client_secret not in text
    if sandbox.graph_url:
        assert config["source"]["graph_url"] == sandbox.graph_url
        assert Path(config["source"]["client_secret_file"]).read_text().strip() == sandbox.client_secret
    else:
        assert "source" not in config  # never the default, real Microsoft Graph


@pytest.mark.samba
def test_the_sandbox_config_serves_the_console_on_loopback_with_an_operator_token(
    sandbox: SandboxInfo,
) -> None:
    assert sandbox.console_url and sandbox.console_token
    url = urllib.parse.urlsplit(sandbox.console_url)
    assert url.scheme == "http" and url.hostname == "127.0.0.1" and url.port
    text = sandbox.config.read_text()
    config = tomllib.loads(text)
    assert config["service"]["listen"] == f"127.0.0.1:{url.port}"
    tokens = Path(config["console"]["tokens_file"])
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    token_file = sandbox.dir / "secrets" / "console_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == sandbox.console_token
    # The tokens file holds the token's hash with the operator role, never the token itself.
    assert sandbox.console_token not in tokens.read_text() and sandbox.console_token not in text
    assert load_tokens(str(tokens))[hash_token(sandbox.console_token)].role == "operator"


@pytest.mark.samba
def test_status_reports_the_dc_up(sandbox: SandboxInfo) -> None:
    status = sandbox_status(sandbox.dir)
    assert status.dc_running and status.provisioned
    # The DC's own process (not the session's first pid: test_hardened_dc restarts the shared DC).
    assert status.samba_pid is not None
    assert Path(os.readlink(f"/proc/{status.samba_pid}/exe")).name == "samba"  # (it retitles its cmdline)
    assert status.up is (status.emulator_running or not status.emulator_installed)


@pytest.mark.samba
@pytest.mark.emulator
def test_the_emulator_grants_a_token_for_the_sandbox_app(request: pytest.FixtureRequest) -> None:
    if not emulator_available():
        pytest.skip("the Graph emulator is not installed in this checkout")
    sandbox: SandboxInfo = request.getfixturevalue("sandbox_graph")
    body = {
        "grant_type": "client_credentials",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "scope": "https://graph.microsoft.com/.default",
    }
    url = f"{sandbox.authority}/oauth2/v2.0/token"
    trust = ssl.create_default_context(cafile=str(sandbox.graph_ca_file))
    good = httpx.post(url, data=body, verify=trust)
    assert good.status_code == 200 and good.json()["token_type"] == "Bearer"
    bad = httpx.post(url, data={**body, "client_secret": "wrong"}, verify=trust)
    assert bad.status_code in (400, 401) and bad.json()["error"] == "invalid_client"


@pytest.mark.samba
def test_pipelined_adds_create_everything_and_name_a_refused_entry(ldap_conn: Any, test_ou: str) -> None:
    prefix = test_ou[5:13]  # sAMAccountNames are unique domain-wide: keep clear of the seeded users
    people = [dataclasses.replace(p, sam=f"{prefix}-{i}") for i, p in enumerate(generated_people(40))]
    assert add_all(ldap_conn, ((p.dn(test_ou), p.ldap_attributes()) for p in people), window=8) == 40
    assert len(list(paged_search(ldap_conn, test_ou, "(objectClass=user)", ["cn"], page_size=15))) == 40
    again = [(people[0].dn(test_ou), people[0].ldap_attributes())]
    with pytest.raises(SandboxError, match="refused to add CN=") as err:
        add_all(ldap_conn, again)
    assert people[0].dn(test_ou) in str(err.value) and "Already exists" in str(err.value)


# --- pure parts ----------------------------------------------------------------------------------------


def test_sid_to_str_decodes_a_binary_sid() -> None:
    raw = bytes.fromhex("010500000000000515000000") + b"".join(
        n.to_bytes(4, "little") for n in (2222474081, 3075579230, 137587363, 1105)
    )
    assert sid_to_str(raw) == "S-1-5-21-2222474081-3075579230-137587363-1105"
    with pytest.raises(ValueError):
        sid_to_str(raw[:-1])


def test_immutable_id_matches_microsofts_example() -> None:
    assert immutable_id(uuid.UUID("25c2879e-20ed-4e66-83f0-9e20460aedf8")) == "nofCJe0gZk6D8J4gRgrt+A=="


def test_generated_people_are_unique_deterministic_and_never_in_hr() -> None:
    fixed = scenario_people(load_scenario().directory_users)
    people = list(generated_people(3000, fixed))
    assert people[:100] == list(generated_people(100, fixed))
    sams = [p.sam.lower() for p in [*fixed, *people]]
    cns = [p.cn.lower() for p in [*fixed, *people]]
    assert len(set(sams)) == len(sams) and len(set(cns)) == len(cns)
    assert max(len(s) for s in sams) <= MAX_SAM_LENGTH
    assert "HR" not in {p.department for p in people}
    disabled = sum(not p.enabled for p in people)
    assert 50 < disabled < 300


def test_set_global_options_replaces_existing_keys_and_keeps_other_sections() -> None:
    conf = "[global]\n\tserver services = s3fs, rpc\n\tworkgroup = CORP\n\n[sysvol]\n\tpath = /x\n"
    out = set_global_options(conf, {"server services": "ldap", "tls enabled": "yes"})
    assert out.count("server services") == 1 and "\tserver services = ldap" in out
    assert "\ttls enabled = yes" in out and "\tworkgroup = CORP" in out
    assert out.index("tls enabled") < out.index("[sysvol]") and out.endswith("\tpath = /x\n")


def test_sample_file_is_the_packaged_scenario() -> None:
    assert load_scenario().document == yaml.safe_load(SAMPLE.read_text())


def _account(sam: str, kind: str = "user", members: list[str] | None = None) -> Account:
    guid = uuid.uuid5(uuid.NAMESPACE_DNS, sam)
    ou = "OU=Groups" if kind == "group" else "OU=Staff"
    attributes = {"sAMAccountName": [sam], "userAccountControl": ["512"], "department": ["HR"]}
    if members is not None:
        attributes["member"] = members
    return Account(f"CN={sam},{ou},DC=x", guid, f"S-1-5-21-1-2-3-{len(sam)}", sam, kind, attributes)


def test_build_tenant_resolves_placeholders_and_the_synced_group() -> None:
    scenario = load_scenario()
    users = [_account(str(u["sam"])) for u in scenario.directory_users]
    fileshare = _account("GG-Legacy-Fileshare", "group", [users[10].dn, users[8].dn])
    approvers = _account("GG-Finance-Approvers", "group", [users[3].dn, users[4].dn])
    tenant = build_tenant(scenario, [*users, fileshare, approvers], "s3cret")
    assert tenant["apps"][0]["client_secret"] == "s3cret"
    groups = {g["displayName"]: g for g in tenant["groups"]}
    ids = {u["onPremisesSamAccountName"]: u["id"] for u in tenant["users"] if u.get("onPremisesSyncEnabled")}
    sap = groups["DSG-AVD-PUBAPP-SAP"]["members"]
    assert len(sap) == 6 and ids["gijs.mulder"] in sap and not any(m.startswith("sam:") for m in sap)
    synced = groups["GG-Legacy-Fileshare"]
    assert synced["id"] == synced_id(fileshare.object_guid)
    assert synced["onPremisesSecurityIdentifier"] == fileshare.sid
    assert sorted(synced["members"]) == sorted([ids[users[10].sam], ids[users[8].sam]])
    assert synced["id"] in groups["SG-App-Payroll"]["members"]
    # The SOA-converted twin: the AD group's identifiers, no longer synced, and the cloud's own members.
    soa = groups["GG-Finance-Approvers"]
    assert (
        soa["id"] == synced_id(approvers.object_guid) and soa["onPremisesSecurityIdentifier"] == approvers.sid
    )
    assert soa["onPremisesSyncEnabled"] is None and soa["onPremisesSyncBehavior"] == {"isCloudManaged": True}
    assert sorted(soa["members"]) == sorted([ids["eva.smit"], ids["femke.meijer"]])
    # Issue 24: a user converted to cloud source of authority, its twin's identifiers plus the scenario's own
    # state, and a guest; both in SG-Treasury-Portal, which has every kind of user member.
    nora = next(u for u in tenant["users"] if u.get("onPremisesSamAccountName") == "nora.kok")
    nora_ad = next(u for u in users if u.sam == "nora.kok")
    assert (
        nora["id"] == synced_id(nora_ad.object_guid) and nora["onPremisesSecurityIdentifier"] == nora_ad.sid
    )
    assert nora["onPremisesImmutableId"] == immutable_id(nora_ad.object_guid)
    assert nora["onPremisesSyncEnabled"] is None and nora["onPremisesSyncBehavior"] == {
        "isCloudManaged": True
    }
    assert nora["department"] == "Treasury" and nora["userType"] == "Member"
    assert sum(1 for u in tenant["users"] if u.get("onPremisesSamAccountName") == "nora.kok") == 1
    guests = [u for u in tenant["users"] if u.get("userType") == "Guest"]
    assert len(guests) == 1 and "#EXT#@" in guests[0]["userPrincipalName"]
    assert not guests[0].get("onPremisesSecurityIdentifier") and not guests[0].get("onPremisesSyncEnabled")
    portal = set(groups["SG-Treasury-Portal"]["members"])
    assert {nora["id"], guests[0]["id"], ids["daan.visser"]} <= portal and len(portal) == 4
    cloud_only = portal - {u["id"] for u in tenant["users"] if u.get("onPremisesSecurityIdentifier")}
    assert cloud_only == {guests[0]["id"], "3e0b6c1a-7d42-4f1e-9a8b-1c2d3e4f5a03"}
    assert soa_user_sams(scenario) == ["nora.kok"]
    hr = groups["HR-All-Staff"]
    assert hr["membershipRule"] == 'user.department -eq "HR"' and hr["membershipRuleProcessingState"] == "On"
    every_id = (
        {u["id"] for u in tenant["users"]}
        | {g["id"] for g in tenant["groups"]}
        | {o["id"] for key in ("devices", "servicePrincipals", "orgContacts") for o in tenant[key]}
    )
    for group in tenant["groups"]:
        assert set(group["members"]) <= every_id, group["displayName"]


def test_build_tenant_names_an_unknown_placeholder() -> None:
    with pytest.raises(SandboxError, match=r"anna\.jansen"):
        build_tenant(load_scenario(), [], "s3cret")


def test_build_tenant_names_a_user_twin_without_its_ad_account() -> None:
    scenario = load_scenario()
    users = [_account(str(u["sam"])) for u in scenario.directory_users if u["sam"] != "nora.kok"]
    groups = [_account(s, "group", []) for s in ("GG-Legacy-Fileshare", "GG-Finance-Approvers")]
    with pytest.raises(SandboxError, match=r"nora\.kok"):
        build_tenant(scenario, [*users, *groups], "s3cret")


def test_the_config_names_the_cloud_users_ou_in_its_users_table(tmp_path: Path) -> None:
    """[users] is written with provision off and target_ou the delegated OU, and the config loads."""
    from writeback.testbed.sandbox import configfile

    info = SandboxInfo(
        dir=tmp_path, ldap_url="ldaps://127.0.0.1:636", gc_url="ldaps://127.0.0.1:3269",
        starttls_url="ldap://127.0.0.1:389", base_dn="DC=corp,DC=example,DC=test", bind_dn="CN=Administrator",
        bind_password="x", ca_file=tmp_path / "ca.pem", users_ou="OU=Staff,DC=corp,DC=example,DC=test",
        groups_ou="OU=Writeback,DC=corp,DC=example,DC=test", onprem_groups_ou="OU=Groups,DC=corp,DC=example,DC=test",
        domain="corp.example.test", users=0, tenant_id="t", client_id="c", client_secret="s",
        config=tmp_path / "writeback.toml", tenant_file=tmp_path / "tenant.yaml", samba_pid=None,
        service_bind_dn="CN=svc-writeback,CN=Users,DC=corp,DC=example,DC=test",
        cloud_users_ou="OU=Cloud Users,DC=corp,DC=example,DC=test",
    )  # fmt: skip
    text = configfile.render(info, SandboxPaths(tmp_path))
    assert tomllib.loads(text)["users"] == {
        "provision": "off",
        "target_ou": "OU=Cloud Users,DC=corp,DC=example,DC=test",
    }
    assert "[users]" not in configfile.render(
        dataclasses.replace(info, cloud_users_ou=None), SandboxPaths(tmp_path)
    )


def test_snapshot_round_trip_moves_the_domain_to_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRITEBACK_CACHE", str(tmp_path / "cache"))
    old = SandboxPaths(tmp_path / "old")
    old.smb_conf.parent.mkdir(parents=True)
    old.smb_conf.write_text(
        f"[global]\n\tprivate dir = {old.root}/samba/private\n\ttls cafile = {old.root}/tls/ca.pem\n"
    )
    with open(old.samba_dir / "sparse.ldb", "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # a 64 MB hole: Samba's databases look like this
    old.tls_dir.mkdir()
    old.bind_password_file.parent.mkdir()
    old.bind_password_file.write_text("pw")
    snapshot_mod.write_marker(old, 2500)
    archive = snapshot_mod.save(old, 2500)
    assert archive.stat().st_size < 1024 * 1024 and stat.S_IMODE(archive.stat().st_mode) == 0o600

    new = SandboxPaths(tmp_path / "new")
    new.root.mkdir()
    assert snapshot_mod.restore(new, 2500)
    assert not snapshot_mod.restore(new, 2501)
    conf = new.smb_conf.read_text()
    assert (
        f"{new.root}/samba/private" in conf and f"{new.root}/tls/ca.pem" in conf and str(old.root) not in conf
    )
    assert new.bind_password_file.read_text() == "pw"
    assert snapshot_mod.read_marker(new) == {
        "layout_version": LAYOUT_VERSION,
        "users": 2500,
        "root": str(new.root),
    }
    used = subprocess.run(["du", "-k", str(new.samba_dir / "sparse.ldb")], capture_output=True, text=True)
    assert int(used.stdout.split()[0]) < 1024  # restored sparse, not 64 MB of zeros


def test_big_tenants_are_written_as_json_which_loads_fast(tmp_path: Path) -> None:
    paths = SandboxPaths(tmp_path)
    assert paths.tenant_file(50).name == "tenant.yaml" and paths.tenant_file(20000).name == "tenant.json"
    tenant = {"tenant_id": "t", "apps": [{"client_id": "c", "client_secret": "s"}], "users": [{"id": "ü"}]}
    for users in (50, 20000):
        write_tenant(paths.tenant_file(users), tenant)
        assert yaml.safe_load(paths.tenant_file(users).read_text(encoding="utf-8")) == tenant
        assert stat.S_IMODE(paths.tenant_file(users).stat().st_mode) == 0o600
    assert json.loads(paths.tenant_file(20000).read_text(encoding="utf-8")) == tenant


def test_relocate_leaves_similar_prefixes_alone(tmp_path: Path) -> None:
    paths = SandboxPaths(tmp_path / "sb")
    paths.smb_conf.parent.mkdir(parents=True)
    paths.smb_conf.write_text("\tprivate dir = /old/samba/private\n\tlog file = /old2/x\n")
    relocate(paths, "/old")
    assert paths.smb_conf.read_text() == f"\tprivate dir = {paths.root}/samba/private\n\tlog file = /old2/x\n"


def test_missing_samba_without_root_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="apt-get install -y --no-install-recommends samba samba-ad-dc"):
        ensure_installed()


# --- the sandbox directory must be private ---------------------------------------------------------------


def _sandbox_up_cli(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "writeback", "sandbox", "up", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("mode", "who"), [(0o770, "its group"), (0o707, "other users"), (0o777, "its group and other users")]
)
def test_sandbox_up_refuses_a_directory_group_or_others_can_write(
    tmp_path: Path, mode: int, who: str
) -> None:
    directory = tmp_path / "sb"
    directory.mkdir()
    directory.chmod(mode)
    result = _sandbox_up_cli(directory)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"refusing the sandbox directory {directory}: {who} can write it (mode {mode:04o})" in result.stderr
    )
    assert f"chmod go-w {directory}" in result.stderr
    assert list(directory.iterdir()) == [], "nothing may be written into a refused directory"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_sandbox_up_refuses_a_directory_another_user_owns(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)  # nobody
    result = _sandbox_up_cli(directory)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"refusing the sandbox directory {directory}: it belongs to" in result.stderr
    assert "uid 65534" in result.stderr and "not to you" in result.stderr
    assert list(directory.iterdir()) == []


def test_a_private_directory_passes_the_check(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    directory.mkdir(mode=0o700)
    check_directory(directory)  # no exception
    check_directory(tmp_path / "not-yet")  # created later with mode 0700
    (tmp_path / "file").write_text("x")
    with pytest.raises(SandboxError, match="is not a directory"):
        check_directory(tmp_path / "file")


# --- the emulator's admin API needs the sandbox's admin token ---------------------------------------------


@pytest.mark.samba
@pytest.mark.emulator
def test_sandbox_emulator_admin_api_needs_the_token_from_sandbox_json(request: pytest.FixtureRequest) -> None:
    sandbox: SandboxInfo = request.getfixturevalue("sandbox_graph")
    assert sandbox.emulator_admin_token
    trust = ssl.create_default_context(cafile=str(sandbox.graph_ca_file))
    with httpx.Client(base_url=str(sandbox.graph_url), verify=trust) as client:
        assert client.get("/_emulator/stats").status_code == 401
        wrong = client.get("/_emulator/stats", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        token = {"Authorization": f"Bearer {sandbox.emulator_admin_token}"}
        right = client.get("/_emulator/stats", headers=token)
        assert right.status_code == 200 and right.json()["tenant"]["groups"] > 0
    assert str(sandbox.graph_url).startswith("https://127.0.0.1:")


# --- the service account: the demo flow with production's rights ------------------------------------------


@pytest.mark.samba
@pytest.mark.emulator
def test_the_demo_flow_runs_as_the_least_privileged_service_account(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    sandbox: SandboxInfo = request.getfixturevalue("sandbox_graph")
    # The sandbox's own config, with a private state file so the developer's demo state is left alone.
    text = sandbox.config.read_text()
    state = json.dumps(str(sandbox.dir / "state.sqlite"))
    assert state in text
    config = tmp_path / "writeback.toml"
    config.write_text(text.replace(state, json.dumps(str(tmp_path / "s.sqlite"))))

    def writeback(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "WRITEBACK_CONFIG"}
        return subprocess.run(
            [sys.executable, "-m", "writeback", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )

    check = writeback("config", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"bind OK as {sandbox.service_bind_dn}" in check.stdout
    assert "Configuration OK" in check.stdout
    plan = writeback("plan")
    assert plan.returncode in (0, 2), plan.stdout + plan.stderr
    applied = writeback("apply", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert json.loads(applied.stdout)["failed"] == 0
    again = writeback("plan")
    assert again.returncode == 0, again.stdout + again.stderr
    shown = writeback("show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "SG-NL-Finance-Department" in shown.stdout and "DSG-AVD-PUBAPP-SAP" in shown.stdout
    # `writeback run` with the sandbox's config serves the console at console_url; its token signs in.
    assert sandbox.console_url and sandbox.console_token
    env = {k: v for k, v in os.environ.items() if k != "WRITEBACK_CONFIG"}
    service = subprocess.Popen(
        [sys.executable, "-m", "writeback", "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        status: dict[str, Any] = {}
        for _ in range(150):
            try:
                r = httpx.get(
                    f"{sandbox.console_url}/api/status",
                    headers={"Authorization": f"Bearer {sandbox.console_token}"},
                )
            except httpx.TransportError:
                assert service.poll() is None, "writeback run ended before serving the console"
                time.sleep(0.2)
                continue
            assert r.status_code == 200, r.text
            status = r.json()
            if status.get("lastSuccessfulExecution"):
                break
            time.sleep(0.2)
        assert status.get("lastSuccessfulExecution"), f"no successful cycle reported by the console: {status}"
        assert httpx.get(f"{sandbox.console_url}/api/status").status_code == 401
    finally:
        service.terminate()
        _, err = service.communicate(timeout=30)
    assert service.returncode == 0, err[-2000:]
    assert sandbox.console_token not in err
    outputs = check.stdout + plan.stdout + applied.stdout + shown.stdout
    for secret in (sandbox.bind_password, sandbox.service_bind_password, sandbox.client_secret):
        assert secret and secret not in outputs


@pytest.mark.samba
def test_the_dc_refuses_the_service_account_outside_its_delegated_ou(
    sandbox: SandboxInfo, ldap_conn: Any, test_ou: str
) -> None:
    """Least privilege is real: the writes that succeed in OU=Writeback are refused everywhere else."""
    name = f"lp{uuid.uuid4().hex[:8]}"
    group = [("objectClass", [b"top", b"group"]), ("sAMAccountName", [name.encode()])]
    onprem = f"CN=GG-Legacy-Fileshare,{sandbox.onprem_groups_ou}"
    before = ldap_conn.search_s(onprem, ldap.SCOPE_BASE, attrlist=["description", "member"])[0][1]
    # A staff account the service has no right on: not a member of that group, and not the SOA user's original
    # account (the sandbox delegates writing that one: test_the_service_account_may_write_the_soa_users_...).
    soa = {sam.lower() for sam in soa_user_sams(load_scenario())}
    users = ldap_conn.search_s(
        sandbox.users_ou, ldap.SCOPE_ONELEVEL, "(objectClass=user)", ["cn", "sAMAccountName"]
    )
    staff = next(
        dn
        for dn, attrs in sorted(users, key=lambda u: u[0] or "")
        if dn
        and dn.encode() not in before.get("member", [])
        and attrs["sAMAccountName"][0].decode().lower() not in soa
    )
    svc = connect_as_service(sandbox)
    try:
        inside = f"CN={name},{sandbox.groups_ou}"
        svc.add_s(inside, group)  # allowed: the delegated OU
        svc.delete_s(inside)
        for where in (sandbox.onprem_groups_ou, test_ou, sandbox.users_ou, sandbox.base_dn):
            with pytest.raises(ldap.INSUFFICIENT_ACCESS):
                svc.add_s(f"CN={name},{where}", group)
        with pytest.raises(ldap.INSUFFICIENT_ACCESS):
            svc.modify_s(onprem, [(ldap.MOD_REPLACE, "description", [b"changed by svc"])])
        with pytest.raises(ldap.INSUFFICIENT_ACCESS):
            svc.modify_s(onprem, [(ldap.MOD_ADD, "member", [staff.encode()])])
        with pytest.raises(ldap.INSUFFICIENT_ACCESS):
            svc.modify_s(staff, [(ldap.MOD_REPLACE, "department", [b"Changed"])])
    finally:
        svc.unbind_s()
    # Nothing happened (checked as Administrator).
    assert not [
        dn
        for dn, _ in ldap_conn.search_s(sandbox.base_dn, ldap.SCOPE_SUBTREE, f"(sAMAccountName={name})")
        if dn
    ]
    after = ldap_conn.search_s(onprem, ldap.SCOPE_BASE, attrlist=["description", "member"])[0][1]
    assert after == before


@pytest.mark.samba
def test_per_test_ou_delegation_gives_the_service_account_the_same_rights(
    sandbox: SandboxInfo, test_ou: str
) -> None:
    name = f"lp{uuid.uuid4().hex[:8]}"
    dn = f"CN={name},{test_ou}"
    group = [("objectClass", [b"top", b"group"]), ("sAMAccountName", [name.encode()])]
    svc = connect_as_service(sandbox)
    try:
        with pytest.raises(ldap.INSUFFICIENT_ACCESS):
            svc.add_s(dn, group)
        delegate_to_service_account(sandbox, test_ou)
        delegate_to_service_account(sandbox, test_ou)  # the second call finds the delegation and does nothing
        svc.add_s(dn, group)
        svc.modify_s(dn, [(ldap.MOD_REPLACE, "description", [b"ok"])])
        svc.modify_s(dn, [(ldap.MOD_REPLACE, "groupType", [b"-2147483640"])])
        with pytest.raises(ldap.INSUFFICIENT_ACCESS):  # only the listed properties
            svc.modify_s(dn, [(ldap.MOD_REPLACE, "info", [b"not delegated"])])
        svc.delete_s(dn)
    finally:
        svc.unbind_s()


def test_the_console_port_and_token_are_made_once_and_kept(tmp_path: Path) -> None:
    from writeback.testbed.sandbox import console

    paths = SandboxPaths(tmp_path)
    url, token = console.ensure(paths)
    assert url.startswith("http://127.0.0.1:") and token
    assert stat.S_IMODE(paths.console_tokens_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.console_token_file.stat().st_mode) == 0o600
    assert token not in paths.console_tokens_file.read_text()
    assert load_tokens(str(paths.console_tokens_file))[hash_token(token)].role == "operator"
    paths.info_file.write_text(json.dumps({"console_url": url}))  # as sandbox_up saves it
    assert console.ensure(paths) == (url, token)  # the same address and token on the next `up`
    assert console.listen(url) == url.removeprefix("http://")


# --- issue 24: cloud users --------------------------------------------------------------------------------


def _user_entry(name: str, upn_domain: str, password: str) -> list[tuple[str, list[bytes]]]:
    """A disabled user with a password set in the add, as writeback creates accounts for cloud-only members."""
    return [
        ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
        ("sAMAccountName", [name.encode()]),
        ("userPrincipalName", [f"{name}@{upn_domain}".encode()]),
        ("displayName", [b"Cloud Member"]),
        ("unicodePwd", [f'"{password}"'.encode("utf-16-le")]),
        ("userAccountControl", [b"514"]),  # NORMAL_ACCOUNT | ACCOUNTDISABLE
    ]


@pytest.mark.samba
def test_the_service_account_manages_user_accounts_in_the_cloud_users_ou_and_nowhere_else(
    sandbox: SandboxInfo, ldap_conn: Any, test_ou: str
) -> None:
    """docs/least-privilege.md, "Cloud users": on OU=Cloud Users the service account creates and deletes user
    objects, writes the mapped attributes, names, userAccountControl and anchor, and resets passwords; it
    cannot create users in any other OU, nor write attributes the document does not list."""
    assert sandbox.cloud_users_ou == f"OU=Cloud Users,{sandbox.base_dn}"
    name = f"cu{uuid.uuid4().hex[:8]}"
    password = f"Aa1-{uuid.uuid4().hex}"
    entry = _user_entry(name, sandbox.domain, password)
    dn = f"CN={name},{sandbox.cloud_users_ou}"
    svc = connect_as_service(sandbox)
    try:
        for where in (sandbox.users_ou, sandbox.groups_ou, test_ou, sandbox.base_dn):
            with pytest.raises(ldap.INSUFFICIENT_ACCESS):
                svc.add_s(f"CN={name},{where}", entry)
        svc.add_s(dn, entry)
        try:
            anchor = f"User_{uuid.uuid4()}".encode()
            svc.modify_s(
                dn,
                [
                    (ldap.MOD_REPLACE, "department", [b"Treasury"]),
                    (ldap.MOD_REPLACE, "givenName", [b"Cloud"]),
                    (ldap.MOD_REPLACE, "employeeID", [b"900001"]),
                    (ldap.MOD_REPLACE, EXTERNAL_ID, [anchor]),
                    (ldap.MOD_REPLACE, "adminDescription", [anchor]),
                    (ldap.MOD_REPLACE, "userAccountControl", [b"512"]),  # enabled (password set)
                ],
            )
            new_password = f'"Bb2-{uuid.uuid4().hex}"'.encode("utf-16-le")
            svc.modify_s(dn, [(ldap.MOD_REPLACE, "unicodePwd", [new_password])])  # Reset Password
            svc.rename_s(dn, f"CN={name}-renamed")  # a rename: Write cn and name
            dn = f"CN={name}-renamed,{sandbox.cloud_users_ou}"
            for refused in (
                (ldap.MOD_REPLACE, "info", [b"not delegated"]),
                (ldap.MOD_REPLACE, "description", [b"not delegated"]),
                (ldap.MOD_REPLACE, "sAMAccountName", [b"x" + name.encode()]),
            ):
                with pytest.raises(ldap.INSUFFICIENT_ACCESS):
                    svc.modify_s(dn, [refused])
            found = ldap_conn.search_s(
                dn, ldap.SCOPE_BASE, attrlist=["department", EXTERNAL_ID, "userAccountControl"]
            )
            assert found[0][1]["department"] == [b"Treasury"] and found[0][1][EXTERNAL_ID] == [anchor]
            assert found[0][1]["userAccountControl"] == [b"512"]
        finally:
            svc.delete_s(dn)  # Delete Child of class user
        # Only user objects: no group in the cloud users' OU.
        group = [("objectClass", [b"top", b"group"]), ("sAMAccountName", [name.encode()])]
        with pytest.raises(ldap.INSUFFICIENT_ACCESS):
            svc.add_s(f"CN={name},{sandbox.cloud_users_ou}", group)
    finally:
        svc.unbind_s()


@pytest.mark.samba
def test_the_service_account_may_write_the_soa_users_original_account_but_not_its_names(
    sandbox: SandboxInfo, ldap_conn: Any
) -> None:
    """The sample's SOA-converted user (nora.kok): her original account in OU=Staff takes the mapped attributes,
    userAccountControl and the anchor from the service account; never her names or password, and no other
    account in OU=Staff takes anything."""
    nora = f"CN=Nora Kok,{sandbox.users_ou}"
    before = ldap_conn.search_s(nora, ldap.SCOPE_BASE, attrlist=["department", EXTERNAL_ID])[0][1]
    assert before["department"] == [b"Finance"]
    anna = f"CN=Anna Jansen,{sandbox.users_ou}"
    svc = connect_as_service(sandbox)
    try:
        svc.modify_s(
            nora,
            [
                (ldap.MOD_REPLACE, "department", [b"Treasury"]),
                (ldap.MOD_REPLACE, EXTERNAL_ID, [b"User_test-only"]),
                (ldap.MOD_REPLACE, "userAccountControl", [b"512"]),
            ],
        )
        for refused in (
            (ldap.MOD_REPLACE, "sAMAccountName", [b"nora.kok2"]),
            (ldap.MOD_REPLACE, "userPrincipalName", [b"nora2@corp.example.test"]),
            (ldap.MOD_REPLACE, "unicodePwd", [f'"Cc3-{uuid.uuid4().hex}"'.encode("utf-16-le")]),
            (ldap.MOD_REPLACE, "adminDescription", [b"User_test-only"]),
        ):
            with pytest.raises((ldap.INSUFFICIENT_ACCESS, ldap.CONSTRAINT_VIOLATION)):
                svc.modify_s(nora, [refused])
        with pytest.raises(ldap.INSUFFICIENT_ACCESS):
            svc.rename_s(nora, "CN=Nora K")
        with pytest.raises(ldap.INSUFFICIENT_ACCESS):
            svc.modify_s(anna, [(ldap.MOD_REPLACE, "department", [b"Treasury"])])
    finally:
        svc.unbind_s()
        restore = [(ldap.MOD_REPLACE, "department", [b"Finance"])]
        restore.append(
            (ldap.MOD_REPLACE, EXTERNAL_ID, before[EXTERNAL_ID])
            if EXTERNAL_ID in before
            else (ldap.MOD_DELETE, EXTERNAL_ID, None)
        )
        ldap_conn.modify_s(nora, restore)


@pytest.mark.samba
def test_the_documented_user_sddl_is_what_the_sandbox_delegates(sandbox: SandboxInfo, ldap_conn: Any) -> None:
    """docs/least-privilege.md's SDDL for the users' OU, with the schemaIDGUIDs written out, equals what the
    sandbox applies (read from the DC's schema, which carries Windows' schemaIDGUIDs)."""
    from writeback.testbed.sandbox.serviceaccount import cloud_users_sddl

    docs = (Path(__file__).resolve().parents[2] / "docs" / "least-privilege.md").read_text(encoding="utf-8")
    block = docs.split("## Cloud users:", 1)[1].split("```", 2)[1]
    documented = "".join(line.split()[0] for line in block.strip().splitlines())
    assert sandbox.service_sid
    applied = cloud_users_sddl(ldap_conn, sandbox.base_dn, sandbox.service_sid)
    assert documented.replace("<SID>", sandbox.service_sid) == applied
