"""The test bed's subtree delete when Samba refuses to delete a very big group in one transaction."""

from __future__ import annotations

from typing import Any

import ldap
import pytest

from writeback.testbed.sandbox import ldapconn, seed


class SambaLike:
    """Answers as Samba 4.17 did to the benchmark (18:29, 27 Nov 2026): the tree delete refused, and the delete of
    a group still holding 130,000 members refused with 51 busy ("replmd_delete: Failed to modify object")."""

    def __init__(self, members: int) -> None:
        self.entries: dict[str, list[bytes]] = {
            "OU=B,DC=x": [],
            "CN=Big,OU=B,DC=x": [f"CN=u{i},DC=x".encode() for i in range(members)],
        }
        self.modifies = 0

    def delete_ext_s(self, dn: str, serverctrls: Any = None) -> None:
        raise ldap.UNWILLING_TO_PERFORM({"desc": "tree delete refused"})

    def delete_s(self, dn: str) -> None:
        if len(self.entries[dn]) > 10_000:
            raise ldap.BUSY({"desc": "Server is busy", "info": "replmd_delete: Failed to modify object"})
        del self.entries[dn]

    def search_s(self, dn: str, scope: int, flt: str, attrs: list[str]) -> list[tuple[str, dict[str, Any]]]:
        return [(dn, {"member": list(self.entries[dn])})]

    def modify_s(self, dn: str, mods: list[tuple[int, str, list[bytes]]]) -> None:
        ((op, attr, values),) = mods
        assert op == ldap.MOD_DELETE and attr == "member" and len(values) <= ldapconn.MEMBER_CHUNK
        gone = set(values)
        self.entries[dn] = [v for v in self.entries[dn] if v not in gone]
        self.modifies += 1


def test_a_group_too_big_to_delete_at_once_is_emptied_in_chunks_then_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = SambaLike(members=12_345)
    monkeypatch.setattr(seed, "paged_search", lambda c, base, flt, attrs: [(d, {}) for d in c.entries])
    ldapconn.delete_subtree(conn, "OU=B,DC=x")
    assert conn.entries == {} and conn.modifies == 3
