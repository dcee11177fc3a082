"""``LdapDirectory.resolve_accounts`` as a big group's first apply uses it (issue 27, memory of one big group):
every user read page by page when many keys are asked, each key held once, and an account sharing its SID and
GUID strings with the keys it was found by. Against the connection double answering as Windows Server does
(tests/unit/ad_double.py: at most MaxPageSize = 1,000 entries a page)."""

from __future__ import annotations

import pytest

import writeback.adapters.directory.adapter as adapter
from tests.unit.ad_double import WindowsDC
from tests.unit.test_directory_member_keys import DOMAIN_SID, add_account, windows_dc
from tests.unit.test_directory_ranges import settings
from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.adapter import AccountKeys, shared_account
from writeback.core.model import DirectoryAccount


def test_account_keys_hold_each_key_once_and_answer_every_spelling_given() -> None:
    keys = AccountKeys()
    sid = f"{DOMAIN_SID}-1001"
    assert keys.add(sid, sid) is True
    assert keys.add(sid, sid) is False, "a string given twice is one key (one filter term)"
    assert keys.add(sid, sid.lower()) is True, "another spelling of the same SID is answered too"
    assert keys.add(sid, sid.lower()) is False
    other = f"{DOMAIN_SID}-1002"
    assert keys.add(other, other.lower()) is True
    assert len(keys) == 3 and list(keys) == [sid, other]
    assert keys.given(sid) == (sid, sid.lower())
    assert keys.given(other) == (other.lower(),)
    assert keys.given(f"{DOMAIN_SID}-9") == ()
    # The canonical value as the key holds it: the given string itself when it is the canonical form.
    decoded = "".join([DOMAIN_SID, "-1001"])  # an equal string, not the same object
    assert decoded is not sid and keys.shared(decoded) is sid
    decoded_other = "".join([DOMAIN_SID, "-1002"])
    assert keys.shared(decoded_other) is decoded_other, "given only in another spelling: not shared"
    assert keys.shared(None) is None


def test_shared_account_takes_the_keys_strings_and_changes_nothing_else() -> None:
    sids, guids = AccountKeys(), AccountKeys()
    sid, guid = f"{DOMAIN_SID}-1001", "6f1b7a4e-0d3c-4b8e-9a51-2f3c4d5e6f70"
    sids.add(sid, sid)
    guids.add(guid, guid)
    found = DirectoryAccount("CN=a,DC=corp,DC=test", "".join([guid]), "".join([sid]), "user", None)
    shared = shared_account(found, sids, guids)
    assert shared == found and shared.object_sid is sid and shared.object_guid is guid
    alone = DirectoryAccount("CN=b,DC=corp,DC=test", "00000000-0000-4000-8000-000000000001", None)
    assert shared_account(alone, sids, guids) is alone


def _directory_of(count: int) -> tuple[WindowsDC, list[str], list[str]]:
    dc = windows_dc()
    users = [add_account(dc, f"user{i:05d}", 2000 + i, f"OU=Staff,{dc.nc}") for i in range(count)]
    return dc, users, [f"{DOMAIN_SID}-{2000 + i}" for i in range(count)]


def test_many_keys_read_every_user_page_by_page_with_the_answer_of_batched_searches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dc, users, sids = _directory_of(2_500)
    asked = [*sids[:1_800], sids[1_800].lower(), "S-1-5-21-1-2-3-999999", "not a sid"]
    guid = dc.guid_of(users[2_100])
    with LdapDirectory(settings(), connect=dc.connect) as d:
        batched = d.resolve_accounts(asked[:150], [guid])
    monkeypatch.setattr(adapter, "FULL_SCAN_TERMS", 100)
    with LdapDirectory(settings(), connect=dc.connect) as d:
        small = d.resolve_accounts(asked[:150], [guid])
        dc.log.clear()
        scanned = d.resolve_accounts(asked, [guid])
        searches = [f for kind, (_b, _s, f, _a) in dc.log if kind == "search"]
    assert small == batched and len(batched.by_sid) == 150, "the same answer either way"
    # One subtree search of every user, in pages of at most 1,000 (the DC's MaxPageSize): 2,500 users, 3 pages.
    assert set(searches) == {"(&(objectCategory=person)(objectClass=user))"} and len(searches) == 3
    assert set(scanned.by_sid) == {*sids[:1_800], sids[1_800].lower()}
    assert scanned.by_sid[sids[1_800].lower()].dn == users[1_800]
    assert scanned.by_guid == {guid: small.by_guid[guid]}
    for i in (0, 999, 1_000, 1_799):  # from each page
        account = scanned.by_sid[sids[i]]
        assert account.dn == users[i] and account.object_guid == dc.guid_of(users[i])
        assert account.object_sid is sids[i], "the account holds the key's string, not a second copy"


def test_a_search_retried_after_a_lost_connection_gives_the_same_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page handed over before the connection dropped is handed over again by the retry: harmless."""
    import ldap

    dc, _users, sids = _directory_of(1_500)
    monkeypatch.setattr(adapter, "FULL_SCAN_TERMS", 10)
    with LdapDirectory(settings(), connect=dc.connect) as d:
        expected = d.resolve_accounts(sids, ())
    calls = {"n": 0}
    real = dc.connect

    def flaky_connect(*args: object, **kwargs: object) -> object:
        conn = real(*args, **kwargs)
        original = conn.result3

        def result3(*a: object, **k: object) -> object:
            calls["n"] += 1
            if calls["n"] == 2:  # the second page of the first attempt
                raise ldap.SERVER_DOWN({"desc": "Can't contact LDAP server"})
            return original(*a, **k)

        conn.result3 = result3
        return conn

    with LdapDirectory(settings(), connect=flaky_connect) as d:
        again = d.resolve_accounts(sids, ())
    assert calls["n"] > 3, "the search was retried from its first page"
    assert again == expected and len(again.by_sid) == 1_500
