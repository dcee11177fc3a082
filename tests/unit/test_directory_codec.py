"""Pure helpers of the LDAP adapter: SID/GUID codecs, filters, chunking, ranged attribute names."""

from __future__ import annotations

import pytest

from writeback.adapters.directory.codec import (
    chunked,
    escape_filter_bytes,
    guid_to_bytes,
    guid_to_str,
    lower_keys,
    most_specific_class,
    or_filter,
    parse_extended_dn,
    parse_range,
    sid_from_str,
    sid_rid,
    sid_to_str,
    split_member_values,
)

# BUILTIN\Administrators, byte for byte as MS-DTYP 2.4.2.2 lays it out.
ADMINISTRATORS = bytes.fromhex("01020000000000052000000020020000")
DOMAIN_ADMINS = "S-1-5-21-1004336348-1177238915-682003330-512"


def test_sid_to_str_well_known() -> None:
    assert sid_to_str(ADMINISTRATORS) == "S-1-5-32-544"
    assert sid_to_str(bytes.fromhex("010100000000000100000000")) == "S-1-1-0"  # Everyone


def test_sid_from_str_well_known() -> None:
    assert sid_from_str("S-1-5-32-544") == ADMINISTRATORS


def test_domain_sid_layout_and_round_trip() -> None:
    raw = sid_from_str(DOMAIN_ADMINS)
    assert raw[:8] == bytes([1, 5, 0, 0, 0, 0, 0, 5])
    assert raw[8:12] == (21).to_bytes(4, "little")
    assert raw[-4:] == (512).to_bytes(4, "little")
    assert len(raw) == 8 + 5 * 4
    assert sid_to_str(raw) == DOMAIN_ADMINS


def test_large_authority_is_hex() -> None:
    text = "S-1-0x000100000000-7"
    raw = sid_from_str(text)
    assert raw[2:8] == bytes.fromhex("000100000000")
    assert sid_to_str(raw) == text


@pytest.mark.parametrize("text", ["S-1-5", "S-1-5-18", "S-1-5-21" + "-4294967295" * 14, DOMAIN_ADMINS])
def test_sid_round_trip_from_no_to_fifteen_sub_authorities(text: str) -> None:
    raw = sid_from_str(text)
    assert len(raw) == 8 + 4 * (text.count("-") - 2)
    assert sid_to_str(raw) == text


def test_sub_authority_max_value() -> None:
    text = "S-1-5-21-4294967295"
    assert sid_to_str(sid_from_str(text)) == text


@pytest.mark.parametrize(
    "bad", ["", "S-2-5-32", "S-1-5-x", "S-1-5-4294967296", "S-1-5" + "-1" * 16, "1-5-32-544"]
)
def test_sid_from_str_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        sid_from_str(bad)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x01\x01\x00",
        bytes.fromhex("01030000000000052000000020020000"),  # count says 3, holds 2
        ADMINISTRATORS[:-1],
        b"\x02" + ADMINISTRATORS[1:],
    ],
)
def test_sid_to_str_rejects(bad: bytes) -> None:
    with pytest.raises(ValueError):
        sid_to_str(bad)


def test_sid_rid() -> None:
    assert sid_rid(DOMAIN_ADMINS) == 512
    assert sid_rid("S-1-1") is None


def test_guid_bytes_le() -> None:
    text = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    raw = bytes.fromhex("e004253f894fd3119a0c0305e82c3301")
    assert guid_to_bytes(text) == raw
    assert guid_to_bytes("{" + text.upper() + "}") == raw
    assert guid_to_str(raw) == text


def test_escape_filter_bytes_escapes_every_byte() -> None:
    assert escape_filter_bytes(b"\x01\x05(*)\\") == "\\01\\05\\28\\2a\\29\\5c"


def test_or_filter() -> None:
    assert or_filter(["(a=1)"]) == "(a=1)"
    assert or_filter(["(a=1)", "(b=2)"]) == "(|(a=1)(b=2))"
    with pytest.raises(ValueError):
        or_filter([])


def test_chunked() -> None:
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []
    assert [len(c) for c in chunked(range(12_000), 5_000)] == [5_000, 5_000, 2_000]
    with pytest.raises(ValueError):
        list(chunked([1], 0))


def test_parse_range() -> None:
    assert parse_range("member;range=0-1499") == ("member", 0, 1499)
    assert parse_range("member;range=1500-*") == ("member", 1500, None)
    assert parse_range("Member;Range=3000-*") == ("Member", 3000, None)
    assert parse_range("member") is None
    assert parse_range("member;binary") is None


def test_split_member_values_plain_and_ranged() -> None:
    assert split_member_values({"member": [b"CN=a", b"CN=b"]}) == (["CN=a", "CN=b"], None)
    assert split_member_values({"member;range=0-1": [b"CN=a", b"CN=b"]}) == (["CN=a", "CN=b"], 2)
    assert split_member_values({"member;range=2-*": [b"CN=c"]}) == (["CN=c"], None)
    assert split_member_values({"objectguid": [b"x"]}) == ([], None)


def test_lower_keys() -> None:
    assert lower_keys({"objectGUID": [b"1"], "Member": []}) == {"objectguid": [b"1"], "member": []}


@pytest.mark.parametrize(
    ("classes", "kind"),
    [
        (["top", "person", "organizationalPerson", "user"], "user"),
        (["top", "person", "organizationalPerson", "user", "computer"], "computer"),
        (["top", "group"], "group"),
        (["top", "person", "organizationalPerson", "contact"], "contact"),
        (["top", "foreignSecurityPrincipal"], "foreignsecurityprincipal"),
        ([], "top"),
    ],
)
def test_most_specific_class(classes: list[str], kind: str) -> None:
    assert most_specific_class(classes) == kind


# -- extended DNs (LDAP_SERVER_EXTENDED_DN_OID, MS-ADTS 3.1.1.3.4.1.5) ---------------------------------------
GUID = "7627f46e-2e0c-4854-903e-06f0392a007a"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Flag 1 (string form): a user, and a contact (no objectSid)
        (
            f"<GUID={GUID}>;<SID={DOMAIN_ADMINS}>;CN=Ann,OU=Staff,DC=corp,DC=test",
            ("CN=Ann,OU=Staff,DC=corp,DC=test", GUID, DOMAIN_ADMINS),
        ),
        (f"<GUID={GUID.upper()}>;CN=Contact,DC=corp,DC=test", ("CN=Contact,DC=corp,DC=test", GUID, None)),
        # Flag 0 (hex of the stored bytes)
        (
            f"<GUID={guid_to_bytes(GUID).hex()}>;<SID={ADMINISTRATORS.hex()}>;CN=Administrators,CN=Builtin,DC=x",
            ("CN=Administrators,CN=Builtin,DC=x", GUID, "S-1-5-32-544"),
        ),
        # ';' and '<' escaped inside the DN itself stay part of the DN
        (f"<GUID={GUID}>;CN=a\\;b \\<c\\>,DC=x", ("CN=a\\;b \\<c\\>,DC=x", GUID, None)),
        # a plain DN (the server ignored the control)
        ("CN=Plain;,DC=x", ("CN=Plain;,DC=x", None, None)),
        ("CN=a\\;<GUID=x>;b,DC=x", ("CN=a\\;<GUID=x>;b,DC=x", None, None)),
    ],
)
def test_parse_extended_dn(value: str, expected: tuple[str, str | None, str | None]) -> None:
    assert parse_extended_dn(value) == expected


def test_parse_extended_dn_drops_a_part_that_does_not_decode_but_keeps_the_dn() -> None:
    assert parse_extended_dn("<GUID=not-a-guid>;<SID=S-1-5-21-1-2-3-1104>;CN=x,DC=y") == (
        "CN=x,DC=y",
        None,
        "S-1-5-21-1-2-3-1104",
    )
