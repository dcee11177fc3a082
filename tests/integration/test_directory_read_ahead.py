"""The read ahead of a full plan's big AD reads (issue 27: writeback.adapters.directory.readahead) against the
real Samba AD DC: it answers exactly what the directory answers at gathering time, on connections of its own,
only where the question is the one read ahead."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from tests.integration.test_directory import (
    ANCHORS,
    MAPPED,
    add_user,
    group_attrs,
    make_settings,
    read_one,
    unique,
)

import writeback.adapters.directory.adapter as adapter
from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.codec import guid_to_str, sid_to_str
from writeback.core.model import ANCHOR_PREFIX

pytestmark = pytest.mark.samba

PREFIXES = (ANCHOR_PREFIX,)


def accounts(resolved: Any) -> tuple[dict[str, tuple[str, str, str | None]], ...]:
    def plain(by: dict[str, Any]) -> dict[str, tuple[str, str, str | None]]:
        return {k: (a.dn.lower(), a.object_guid, a.object_sid) for k, a in by.items()}

    return plain(resolved.by_sid), plain(resolved.by_guid)


def test_the_read_ahead_answers_what_the_directory_answers(
    sandbox: Any, ldap_conn: Any, test_ou: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = [add_user(ldap_conn, test_ou, unique("ra")) for _ in range(4)]
    raw = [read_one(ldap_conn, dn, ["objectSid", "objectGUID"]) for dn in users]
    sids = [sid_to_str(a["objectSid"][0]) for a in raw]
    guids = [guid_to_str(a["objectGUID"][0]) for a in raw]
    with LdapDirectory(make_settings(sandbox)) as d:
        cloud = str(uuid.uuid4())
        d.create_group(
            f"CN=RA {cloud[:8]},{test_ou}",
            group_attrs(unique("rag"), **{"msDS-ExternalDirectoryObjectId": f"Group_{cloud}"}),
            [users[0], users[1]],
        )
        # More keys than the full-scan bound: the directory reads every user, and so does the read ahead.
        monkeypatch.setattr(adapter, "FULL_SCAN_TERMS", 2)
        sids_asked = [*sids[:3], "S-1-5-21-1-2-3-999999"]
        guids_asked = [
            guids[3].upper(),
            guids[0],
        ]  # a second spelling is answered under it, as the directory does
        expected_accounts = accounts(d.resolve_accounts(sids_asked, guids_asked))
        expected_groups = d.read_managed_groups(ANCHORS, (*ANCHORS, *MAPPED), PREFIXES)
        assert any(g.cloud_id == cloud for g in expected_groups)

        main_thread = threading.current_thread()
        with d.read_ahead(ANCHORS, (*ANCHORS, *MAPPED), PREFIXES) as ahead:
            head = ahead.head()
            assert head is not None
            watermark, stamps = head
            assert any(s.key == cloud for s in stamps)
            reader = ahead.reader()
            searches = d.stats["search"]
            assert accounts(reader.resolve_accounts(sids_asked, guids_asked)) == expected_accounts
            assert reader.read_managed_groups(ANCHORS, (*ANCHORS, *MAPPED), PREFIXES) == expected_groups
            # Both answers came from the read ahead: the directory's own connection searched nothing.
            assert d.stats["search"] == searches
            assert threading.current_thread() is main_thread
            # The groups are handed over once; asked again, or asked otherwise, the directory reads.
            assert reader.read_managed_groups(ANCHORS, MAPPED, PREFIXES) == d.read_managed_groups(
                ANCHORS, MAPPED, PREFIXES
            )
            assert d.stats["search"] > searches
            # Few keys: searched for by key at gathering time, as always.
            monkeypatch.setattr(adapter, "FULL_SCAN_TERMS", 2_000)
            before = d.stats["search"]
            assert accounts(reader.resolve_accounts(sids[:1], ())) == accounts(
                d.resolve_accounts(sids[:1], ())
            )
            assert d.stats["search"] > before
        # Closed: its LDAP work is counted with the directory's, its time apart from the plan's reads.
        assert d.timings.get("ad_read_ahead", 0.0) > 0.0
        assert watermark.usn > 0


def test_a_read_ahead_that_fails_leaves_the_plan_to_read_itself(
    sandbox: Any, ldap_conn: Any, test_ou: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    user = add_user(ldap_conn, test_ou, unique("rf"))
    sid = sid_to_str(read_one(ldap_conn, user, ["objectSid"])["objectSid"][0])
    monkeypatch.setattr(adapter, "FULL_SCAN_TERMS", 0)
    with LdapDirectory(make_settings(sandbox)) as d:

        def broken_sibling() -> LdapDirectory:
            # The read ahead's own connection goes to a closed port: its reads fail, the directory's do not.
            return LdapDirectory(make_settings(sandbox, urls=("ldaps://127.0.0.1:1",), timeout=2.0))

        monkeypatch.setattr(d, "sibling", broken_sibling)
        with d.read_ahead(ANCHORS, MAPPED, PREFIXES) as ahead:
            assert ahead.head() is None
            reader = ahead.reader()
            found = reader.resolve_accounts([sid], ())
            assert found.by_sid[sid].dn.lower() == user.lower()
        assert "the AD read made during the Graph read failed" in caplog.text
