"""What the DC holds, read with python-ldap — independently of writeback's own adapter, so a test never checks
writeback against itself. One reader for every test: typed groups (:class:`AdGroup`) for the service and crash
tests, and the raw attribute view (:meth:`AdView.by_cn`, :meth:`AdView.anchored`) for the CLI tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ldap

ANCHOR_ATTRS = ("msDS-ExternalDirectoryObjectId", "adminDescription")
READ = (
    "cn",
    "member",
    "objectGUID",
    "uSNChanged",
    "sAMAccountName",
    "description",
    "displayName",
    "groupType",
    *ANCHOR_ATTRS,
)


@dataclass(frozen=True)
class AdGroup:
    dn: str
    anchor: str | None  # the cloud id of a Group_<id> anchor
    members: frozenset[str]  # lower-cased DNs
    guid: bytes
    usn_changed: int
    cn: str


class AdView:
    """The groups under one OU."""

    def __init__(self, conn: Any, ou: str) -> None:
        self.conn, self.ou = conn, ou

    def _entries(self) -> list[tuple[str, dict[str, list[bytes]]]]:
        found = self.conn.search_s(self.ou, ldap.SCOPE_SUBTREE, "(objectClass=group)", list(READ))
        return [(dn, {k.lower(): v for k, v in raw.items()}) for dn, raw in found if dn]

    def groups(self) -> list[AdGroup]:
        out: list[AdGroup] = []
        for dn, low in self._entries():
            anchors = [
                v.decode() for a in ANCHOR_ATTRS for v in low.get(a.lower(), []) if v.startswith(b"Group_")
            ]
            out.append(
                AdGroup(
                    dn=dn,
                    anchor=anchors[0][len("Group_") :] if anchors else None,
                    members=frozenset(m.decode().lower() for m in low.get("member", [])),
                    guid=low["objectguid"][0],
                    usn_changed=int(low["usnchanged"][0]),
                    cn=low["cn"][0].decode(),
                )
            )
        return out

    def by_anchor(self) -> dict[str, list[AdGroup]]:
        out: dict[str, list[AdGroup]] = {}
        for g in self.groups():
            if g.anchor:
                out.setdefault(g.anchor, []).append(g)
        return out

    def by_cn(self) -> dict[str, dict[str, Any]]:
        """cn -> {"dn": …, attribute (as AD names it) -> decoded values; objectGUID stays bytes}."""
        names = {a.lower(): a for a in READ}
        out: dict[str, dict[str, Any]] = {}
        for dn, low in self._entries():
            values = {
                names.get(k, k): [v if k == "objectguid" else v.decode(errors="replace") for v in vs]
                for k, vs in low.items()
            }
            out[low["cn"][0].decode()] = {"dn": dn, **values}
        return out

    def anchored(self, gid: str) -> dict[str, Any] | None:
        """The group anchored to cloud id ``gid`` (either anchor attribute), as :meth:`by_cn` shows it."""
        for g in self.by_cn().values():
            if f"Group_{gid}" in g.get("msDS-ExternalDirectoryObjectId", []) + g.get("adminDescription", []):
                return g
        return None

    def member_cns(self, gid: str) -> set[str]:
        g = self.anchored(gid)
        assert g is not None, f"no AD group anchored to {gid}"
        return {m.split(",")[0][3:] for m in g.get("member", [])}
