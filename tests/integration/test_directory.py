"""LdapDirectory against the real Samba AD DC of the test bed: connection security, reads, batched writes.

Every object is created under the test's own OU (``test_ou``) so that tests running at the same time in the
shared sandbox never see each other's objects.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap
import pytest
from tests.testbed.fixtures import directory_settings

from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.adapters.directory.codec import guid_to_str, sid_to_str
from writeback.core.model import UNIVERSAL_SECURITY
from writeback.errors import ConfigError, DirectoryAuthError, DirectoryUnavailable, DirectoryWriteError
from writeback.testbed.tlsutil import ensure_server_cert

pytestmark = pytest.mark.samba

ANCHORS = ("msDS-ExternalDirectoryObjectId", "adminDescription")
MAPPED = ("description", "displayName")


def make_settings(sandbox: Any, **overrides: Any) -> DirectorySettings:
    return directory_settings(sandbox, **{"timeout": 15.0, **overrides})


@pytest.fixture
def directory(sandbox: Any) -> Iterator[LdapDirectory]:
    with LdapDirectory(make_settings(sandbox)) as d:
        yield d


def add_ou(conn: Any, dn: str) -> str:
    conn.add_s(dn, [("objectClass", [b"top", b"organizationalUnit"])])
    return dn


def add_user(conn: Any, parent: str, name: str) -> str:
    dn = f"CN={name},{parent}"
    conn.add_s(
        dn,
        [
            ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
            ("sAMAccountName", [name.encode()]),
        ],
    )
    return dn


def read_one(conn: Any, dn: str, attrs: list[str]) -> dict[str, list[bytes]]:
    return dict(conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", attrs)[0][1])


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def group_attrs(name: str, **extra: str | int) -> dict[str, str | int]:
    return {"sAMAccountName": name, "groupType": UNIVERSAL_SECURITY, **extra}


# -- connection security -------------------------------------------------------------------------------


def test_ldaps_with_ca_binds_and_reads_schema(directory: LdapDirectory) -> None:
    directory.check_tls_and_bind()
    assert directory.has_attribute("msDS-ExternalDirectoryObjectId")
    assert directory.has_attribute("adminDescription")
    assert not directory.has_attribute("wbNoSuchAttribute")
    searches = directory.stats["search"]
    assert directory.has_attribute("MSDS-EXTERNALDIRECTORYOBJECTID")  # cached, case-insensitive
    assert directory.stats["search"] == searches
    assert directory.stats["bind"] == 1


def test_starttls_on_plain_port(sandbox: Any) -> None:
    with LdapDirectory(make_settings(sandbox, urls=(sandbox.starttls_url,))) as d:
        d.check_tls_and_bind()
        assert d.existing_dns([sandbox.users_ou]) == {sandbox.users_ou}


def test_starttls_also_verifies_the_certificate(sandbox: Any, tmp_path: Path) -> None:
    wrong_ca = ensure_server_cert(tmp_path, "impostor").ca_file
    with (
        LdapDirectory(make_settings(sandbox, urls=(sandbox.starttls_url,), ca_file=str(wrong_ca))) as d,
        pytest.raises(DirectoryUnavailable, match="certificate"),
    ):
        d.check_tls_and_bind()


def test_no_ca_file_means_certificate_failure(sandbox: Any) -> None:
    # The system trust store does not know the sandbox's private CA: verification must fail, not be skipped.
    with LdapDirectory(make_settings(sandbox, ca_file=None)) as d, pytest.raises(DirectoryUnavailable) as err:
        d.check_tls_and_bind()
    assert f"certificate verify failed for {sandbox.ldap_url}" in str(err.value)
    assert "ca_file" in str(err.value)


def test_wrong_ca_means_certificate_failure(sandbox: Any, tmp_path: Path) -> None:
    wrong_ca = ensure_server_cert(tmp_path, "impostor").ca_file
    with (
        LdapDirectory(make_settings(sandbox, ca_file=str(wrong_ca))) as d,
        pytest.raises(DirectoryUnavailable) as err,
    ):
        d.check_tls_and_bind()
    assert "certificate" in str(err.value)


def test_missing_ca_file_is_a_config_error(sandbox: Any, tmp_path: Path) -> None:
    settings = make_settings(sandbox, ca_file=str(tmp_path / "nope.pem"))
    with LdapDirectory(settings) as d, pytest.raises(ConfigError, match=r"nope\.pem"):
        d.check_tls_and_bind()


def test_wrong_password_is_auth_error_without_the_password(sandbox: Any) -> None:
    secret = "Wr0ng-" + uuid.uuid4().hex
    with (
        LdapDirectory(make_settings(sandbox, bind_password=secret)) as d,
        pytest.raises(DirectoryAuthError) as err,
    ):
        d.check_tls_and_bind()
    assert secret not in str(err.value)
    assert secret not in repr(err.value)
    assert sandbox.bind_dn in str(err.value)


def test_plain_ldap_only_when_allowed_and_the_dc_still_refuses_a_simple_bind(sandbox: Any) -> None:
    # allow_insecure skips StartTLS; the sandbox DC (like a hardened AD) then refuses the password in clear.
    settings = make_settings(sandbox, urls=(sandbox.starttls_url,), ca_file=None, allow_insecure=True)
    with LdapDirectory(settings) as d, pytest.raises(DirectoryAuthError, match="ldaps:// or StartTLS"):
        d.check_tls_and_bind()


def test_failover_to_the_next_url(sandbox: Any) -> None:
    dead = "ldaps://127.0.0.1:9"  # discard port: nothing listens
    with LdapDirectory(make_settings(sandbox, urls=(dead, sandbox.ldap_url))) as d:
        assert d.existing_dns([sandbox.base_dn]) == {sandbox.base_dn}
    with LdapDirectory(make_settings(sandbox, urls=(dead, "ldaps://127.0.0.1:7"))) as d:
        with pytest.raises(DirectoryUnavailable) as err:
            d.check_tls_and_bind()
        assert "127.0.0.1:9" in str(err.value) and "127.0.0.1:7" in str(err.value)


class CuttableProxy:
    """A TCP forwarder to the DC whose open connections the test can cut, as a failing network would."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._server.close()
        self.cut()


@pytest.fixture
def proxy(sandbox: Any) -> Iterator[CuttableProxy]:
    p = CuttableProxy(int(sandbox.ldap_url.rsplit(":", 1)[1]))
    yield p
    p.close()


def test_lost_connection_read_retried_write_reported(
    sandbox: Any, test_ou: str, proxy: CuttableProxy
) -> None:
    with LdapDirectory(make_settings(sandbox, urls=(f"ldaps://127.0.0.1:{proxy.port}",))) as d:
        assert d.existing_dns([test_ou]) == {test_ou}
        proxy.cut()
        assert d.existing_dns([test_ou]) == {test_ou}  # reconnected and retried transparently
        assert d.stats["bind"] == 2
        proxy.cut()
        dn = f"CN=lost,{test_ou}"
        with pytest.raises(DirectoryUnavailable, match="may or may not have been applied"):
            d.create_group(dn, group_attrs(unique("lost")), [])
        assert d.stats["bind"] == 3  # reconnected for the caller's next step
        assert d.existing_dns([dn]) == set()


# -- reads ----------------------------------------------------------------------------------------------


def test_read_managed_groups_finds_anchored_groups_in_any_ou(
    directory: LdapDirectory, ldap_conn: Any, test_ou: str
) -> None:
    ou_a = add_ou(ldap_conn, f"OU=a,{test_ou}")
    ou_b = add_ou(ldap_conn, f"OU=b,{add_ou(ldap_conn, f'OU=deep,{test_ou}')}")
    cloud1, cloud2, cloud3 = (str(uuid.uuid4()) for _ in range(3))
    both = f"CN=Both,{ou_a}"
    directory.create_group(
        both,
        group_attrs(
            unique("both"),
            **{
                "msDS-ExternalDirectoryObjectId": f"Group_{cloud1}",
                "adminDescription": "Group_legacy",
                "description": "d1",
            },
        ),
        [],
    )
    legacy = f"CN=Legacy,{ou_b}"
    directory.create_group(legacy, group_attrs(unique("legacy"), adminDescription=f"Group_{cloud2}"), [])
    directory.create_group(f"CN=Plain,{ou_a}", group_attrs(unique("plain"), description="no anchor"), [])
    directory.create_group(
        f"CN=Lower,{ou_a}", group_attrs(unique("lower"), adminDescription=f"group_{cloud3}"), []
    )
    directory.create_group(f"CN=UserAnchor,{ou_b}", group_attrs(unique("usr"), adminDescription="User_x"), [])

    groups = {
        g.dn.lower(): g
        for g in directory.read_managed_groups(ANCHORS, MAPPED)
        if test_ou.lower() in g.dn.lower()
    }
    assert set(groups) == {both.lower(), legacy.lower()}
    g1, g2 = groups[both.lower()], groups[legacy.lower()]
    assert g1.anchor == f"Group_{cloud1}" and g1.cloud_id == cloud1
    assert g1.attributes["description"] == "d1" and g1.attributes["displayName"] is None
    assert g2.anchor == f"Group_{cloud2}"
    assert g1.group_type == UNIVERSAL_SECURITY and not g1.protected
    assert uuid.UUID(g1.object_guid)


def test_read_managed_groups_with_adminDescription_only(directory: LdapDirectory, test_ou: str) -> None:
    cloud = str(uuid.uuid4())
    dn = f"CN=Old,{test_ou}"
    directory.create_group(dn, group_attrs(unique("old"), adminDescription=f"Group_{cloud}"), [])
    found = [
        g for g in directory.read_managed_groups(("adminDescription",), MAPPED) if g.dn.lower() == dn.lower()
    ]
    assert [g.cloud_id for g in found] == [cloud]


def test_read_groups_marks_protected_and_skips_missing(
    directory: LdapDirectory, sandbox: Any, test_ou: str
) -> None:
    domain_admins = f"CN=Domain Admins,CN=Users,{sandbox.base_dn}"
    missing = f"CN=missing,{test_ou}"
    groups = directory.read_groups([domain_admins, missing, test_ou], ANCHORS, MAPPED)
    assert [g.dn.lower() for g in groups] == [domain_admins.lower()]
    assert groups[0].protected
    assert groups[0].anchor is None
    assert any("administrator" in m.lower() for m in groups[0].members)


def test_resolve_accounts_by_sid_and_guid_via_gc(sandbox: Any, ldap_conn: Any, test_ou: str) -> None:
    users = [add_user(ldap_conn, test_ou, unique("u")) for _ in range(3)]
    raw = [read_one(ldap_conn, dn, ["objectSid", "objectGUID"]) for dn in users]
    sids = [sid_to_str(a["objectSid"][0]) for a in raw]
    guids = [guid_to_str(a["objectGUID"][0]) for a in raw]
    unknown_sid = sids[0].rsplit("-", 1)[0] + "-999999"
    for gc_urls in ((sandbox.gc_url,), ()):
        with LdapDirectory(make_settings(sandbox, gc_urls=gc_urls)) as d:
            resolved = d.resolve_accounts(
                [sids[0], sids[1], unknown_sid, "not-a-sid"], [guids[2].upper(), guids[1]]
            )
            assert set(resolved.by_sid) == {sids[0], sids[1]}
            assert resolved.by_sid[sids[0]].dn.lower() == users[0].lower()
            assert resolved.by_sid[sids[0]].object_guid == guids[0]
            assert resolved.by_sid[sids[0]].object_class == "user"
            assert set(resolved.by_guid) == {guids[2].upper(), guids[1]}
            assert resolved.by_guid[guids[1]].object_sid == sids[1]
            assert d.stats["search"] == (1 if gc_urls else 2)  # one OR batch (+ RootDSE for the domain base)


def test_global_catalog_failover_to_the_next_url(sandbox: Any, ldap_conn: Any, test_ou: str) -> None:
    user = add_user(ldap_conn, test_ou, unique("g"))
    sid = sid_to_str(read_one(ldap_conn, user, ["objectSid"])["objectSid"][0])
    dead = "ldaps://127.0.0.1:9"  # discard port: nothing listens
    with LdapDirectory(make_settings(sandbox, gc_urls=(dead, sandbox.gc_url))) as d:
        assert d.resolve_accounts([sid], []).by_sid[sid].dn.lower() == user.lower()
    with (
        LdapDirectory(make_settings(sandbox, gc_urls=(dead,))) as d,
        pytest.raises(DirectoryUnavailable, match=r"^global catalog: connect on ldaps://127.0.0.1:9 failed"),
    ):
        d.resolve_accounts([sid], [])


def test_resolve_accounts_batches_or_filters(sandbox: Any, ldap_conn: Any, test_ou: str) -> None:
    users = [add_user(ldap_conn, test_ou, unique("b")) for _ in range(5)]
    sids = [sid_to_str(read_one(ldap_conn, dn, ["objectSid"])["objectSid"][0]) for dn in users]
    padding = [f"S-1-5-21-1-2-3-{n}" for n in range(400)]  # 405 values -> 3 batches of <= 200
    with LdapDirectory(make_settings(sandbox, gc_urls=(sandbox.gc_url,))) as d:
        resolved = d.resolve_accounts(sids + padding, [])
        assert set(resolved.by_sid) == set(sids)
        assert d.stats["search"] == 3


def test_resolve_accounts_many_values_reads_all_users_once(
    sandbox: Any, ldap_conn: Any, test_ou: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import writeback.adapters.directory.adapter as adapter

    users = [add_user(ldap_conn, test_ou, unique("f")) for _ in range(3)]
    raw = [read_one(ldap_conn, dn, ["objectSid", "objectGUID"]) for dn in users]
    sids = [sid_to_str(a["objectSid"][0]) for a in raw]
    guid = guid_to_str(raw[2]["objectGUID"][0])
    monkeypatch.setattr(adapter, "FULL_SCAN_TERMS", 2)
    with LdapDirectory(make_settings(sandbox, gc_urls=(sandbox.gc_url,))) as d:
        resolved = d.resolve_accounts([*sids[:2], "S-1-5-21-1-2-3-999999"], [guid])
        assert set(resolved.by_sid) == set(sids[:2])
        assert resolved.by_guid[guid].dn.lower() == users[2].lower()


def test_existing_dns_and_taken_names(directory: LdapDirectory, ldap_conn: Any, test_ou: str) -> None:
    name = unique("Taken")
    user = add_user(ldap_conn, test_ou, name)
    odd = add_ou(ldap_conn, f"OU=a\\,b (x),{test_ou}")
    missing = f"CN=nobody,{test_ou}"
    outside = "CN=nothing,DC=elsewhere,DC=test"
    assert directory.existing_dns([user.upper(), odd, missing, outside, test_ou]) == {
        user.upper(),
        odd,
        test_ou,
    }
    taken = directory.taken_sam_account_names([name.upper(), "wb-free-" + uuid.uuid4().hex[:8], "a*(b)"])
    assert taken == {name.lower(): taken[name.lower()]}
    assert taken[name.lower()].lower() == user.lower()


# -- writes ---------------------------------------------------------------------------------------------


def test_create_group_and_refuse_existing_dn(directory: LdapDirectory, ldap_conn: Any, test_ou: str) -> None:
    users = [add_user(ldap_conn, test_ou, unique("m")) for _ in range(3)]
    dn = f"CN=Sales_e9305786a271,{test_ou}"
    name = unique("sales")
    directory.create_group(
        dn, group_attrs(name, description="Sales", displayName="Sales", adminDescription="Group_x"), users
    )
    attrs = read_one(ldap_conn, dn, ["member", "groupType", "sAMAccountName", "description"])
    assert {m.decode().lower() for m in attrs["member"]} == {u.lower() for u in users}
    assert int(attrs["groupType"][0]) == UNIVERSAL_SECURITY
    assert attrs["sAMAccountName"] == [name.encode()]
    assert directory.stats["add"] == 1 and directory.stats["modify"] == 0
    with pytest.raises(DirectoryWriteError) as err:
        directory.create_group(dn, group_attrs(unique("dup")), [])
    assert err.value.dn == dn
    assert err.value.result is not None and err.value.result.startswith("ALREADY_EXISTS")


def test_member_changes_are_batched_and_idempotent(sandbox: Any, ldap_conn: Any, test_ou: str) -> None:
    users = [add_user(ldap_conn, test_ou, unique("m")) for _ in range(10)]
    dn = f"CN=Batch,{test_ou}"
    with LdapDirectory(make_settings(sandbox, max_values_per_modify=3)) as d:
        d.create_group(dn, group_attrs(unique("batch")), users[:4])  # 1 add (3) + 1 modify (1)
        assert (d.stats["add"], d.stats["modify"]) == (1, 1)
        d.add_members(dn, users[4:])  # 6 values -> 2 modifies
        assert d.stats["modify"] == 3
        assert {m.lower() for m in d.read_members(dn)} == {u.lower() for u in users}

        # Replay after a crash: everything already there, then a mix of old and new values.
        d.remove_members(dn, users[8:])
        before = dict(d.stats)
        d.add_members(dn, users[6:])  # chunks [6,7,8] (6, 7 present) and [9]
        assert {m.lower() for m in d.read_members(dn)} == {u.lower() for u in users}
        assert d.stats["modify"] - before["modify"] == 3  # failed chunk, its redo, the second chunk
        assert d.stats["values_written"] - before["values_written"] == 2

        d.remove_members(dn, users[:5])
        d.remove_members(dn, users[:6])  # the first five are gone already: only users[5] is removed
        assert {m.lower() for m in d.read_members(dn)} == {u.lower() for u in users[6:]}
        d.remove_members(dn, users[:6])  # nothing left to do: no error
        assert {m.lower() for m in d.read_members(dn)} == {u.lower() for u in users[6:]}


def test_add_unknown_member_is_a_write_error(directory: LdapDirectory, test_ou: str) -> None:
    dn = f"CN=Unknown,{test_ou}"
    directory.create_group(dn, group_attrs(unique("unk")), [])
    with pytest.raises(DirectoryWriteError) as err:
        directory.add_members(dn, [f"CN=ghost,{test_ou}"])
    assert err.value.dn == dn


def test_modify_attributes_replaces_and_removes(
    directory: LdapDirectory, ldap_conn: Any, test_ou: str
) -> None:
    dn = f"CN=Attrs,{test_ou}"
    directory.create_group(dn, group_attrs(unique("attr"), description="old"), [])
    directory.modify_attributes(dn, {"description": "new", "displayName": "Shown"})
    assert read_one(ldap_conn, dn, ["description", "displayName"]) == {
        "description": [b"new"],
        "displayName": [b"Shown"],
    }
    directory.modify_attributes(dn, {"description": None, "displayName": None})
    directory.modify_attributes(dn, {"description": None})  # removing an absent value is fine
    assert read_one(ldap_conn, dn, ["description", "displayName"]) == {}
    assert directory.stats["modify"] == 3


def test_move_and_rename_keep_object_guid(directory: LdapDirectory, ldap_conn: Any, test_ou: str) -> None:
    target = add_ou(ldap_conn, f"OU=target,{test_ou}")
    dn = f"CN=Before,{test_ou}"
    directory.create_group(dn, group_attrs(unique("mv")), [])
    guid = read_one(ldap_conn, dn, ["objectGUID"])["objectGUID"]
    renamed = f"CN=After\\, renamed,{test_ou}"
    directory.move(dn, renamed)
    moved = f"CN=Moved,{target}"
    directory.move(renamed, moved)
    assert read_one(ldap_conn, moved, ["objectGUID"])["objectGUID"] == guid
    assert directory.existing_dns([dn, renamed, moved]) == {moved}
    assert directory.stats["modrdn"] == 2
    directory.delete(moved)
    assert directory.existing_dns([moved]) == set()
    assert directory.stats["delete"] == 1
