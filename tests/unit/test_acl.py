"""The DACL reader behind `config check`'s Delete-right check (writeback.adapters.directory.acl)."""

from __future__ import annotations

import struct

import pytest

from writeback.adapters.directory.acl import (
    AUTHENTICATED_USERS,
    CONTAINER_INHERIT,
    DELETE,
    DELETE_CHILD,
    EVERYONE,
    GROUP_CLASS_GUID,
    INHERIT_ONLY,
    may_delete_children,
    parse_dacl,
    token_sids,
)
from writeback.adapters.directory.codec import guid_to_bytes, sid_from_str

SVC = "S-1-5-21-1-2-3-1105"
OTHER = "S-1-5-21-1-2-3-1106"
DOMAIN_ADMINS = "S-1-5-21-1-2-3-512"
USER_CLASS = "bf967aba-0de6-11d0-a285-00aa003049e2"
FULL_CONTROL = 0x000F01FF
CREATE_CHILD = 0x1


def ace(
    kind: int, flags: int, mask: int, sid: str, obj: str | None = None, inherited: str | None = None
) -> bytes:
    body = struct.pack("<I", mask)
    if kind in (5, 6):
        present = (1 if obj else 0) | (2 if inherited else 0)
        body += struct.pack("<I", present)
        body += guid_to_bytes(obj) if obj else b""
        body += guid_to_bytes(inherited) if inherited else b""
    body += sid_from_str(sid)
    return struct.pack("<BBH", kind, flags, 4 + len(body)) + body


def descriptor(*aces: bytes) -> bytes:
    """A self-relative descriptor with only a DACL (what the SD_FLAGS control asks the DC for)."""
    acl_body = b"".join(aces)
    acl = struct.pack("<BBHHH", 4, 0, 8 + len(acl_body), len(aces), 0) + acl_body
    header = struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 20)
    return header + acl


ALLOW, DENY, ALLOW_OBJ, DENY_OBJ = 0, 1, 5, 6


def test_parse_reads_every_access_ace_in_order() -> None:
    dacl = parse_dacl(
        descriptor(
            ace(DENY_OBJ, CONTAINER_INHERIT, DELETE_CHILD, OTHER, GROUP_CLASS_GUID),
            ace(ALLOW_OBJ, CONTAINER_INHERIT | INHERIT_ONLY, 0x20, SVC, USER_CLASS, GROUP_CLASS_GUID),
            ace(ALLOW, 0, FULL_CONTROL, DOMAIN_ADMINS),
        )
    )
    assert [(a.allow, a.sid, a.object_type, a.inherited_object_type) for a in dacl] == [
        (False, OTHER, GROUP_CLASS_GUID, None),
        (True, SVC, USER_CLASS, GROUP_CLASS_GUID),
        (True, DOMAIN_ADMINS, None, None),
    ]
    assert dacl[1].mask == 0x20 and not dacl[1].applies_here and dacl[1].inherited_by_children


def test_delegated_create_and_delete_group_objects_allows_delete() -> None:
    dacl = parse_dacl(
        descriptor(ace(ALLOW_OBJ, CONTAINER_INHERIT, CREATE_CHILD | DELETE_CHILD, SVC, GROUP_CLASS_GUID))
    )
    assert may_delete_children(dacl, token_sids(SVC, []))
    assert not may_delete_children(dacl, token_sids(OTHER, []))


def test_create_only_delegation_does_not_allow_delete() -> None:
    dacl = parse_dacl(descriptor(ace(ALLOW_OBJ, CONTAINER_INHERIT, CREATE_CHILD, SVC, GROUP_CLASS_GUID)))
    assert not may_delete_children(dacl, token_sids(SVC, []))


def test_delete_child_for_another_class_does_not_count() -> None:
    dacl = parse_dacl(descriptor(ace(ALLOW_OBJ, CONTAINER_INHERIT, DELETE_CHILD, SVC, USER_CLASS)))
    assert not may_delete_children(dacl, token_sids(SVC, []))


def test_a_deny_before_the_allow_wins() -> None:
    dacl = parse_dacl(
        descriptor(
            ace(DENY_OBJ, 0, DELETE_CHILD, SVC, GROUP_CLASS_GUID),
            ace(ALLOW, 0, FULL_CONTROL, DOMAIN_ADMINS),
        )
    )
    assert not may_delete_children(dacl, token_sids(SVC, [DOMAIN_ADMINS]))
    assert may_delete_children(dacl, token_sids(OTHER, [DOMAIN_ADMINS]))


def test_rights_through_a_group_in_the_token() -> None:
    dacl = parse_dacl(descriptor(ace(ALLOW, 0, FULL_CONTROL, DOMAIN_ADMINS)))
    assert may_delete_children(dacl, token_sids(SVC, [DOMAIN_ADMINS]))
    assert not may_delete_children(dacl, token_sids(SVC, []))


def test_inherit_only_delete_child_is_not_for_this_ou() -> None:
    dacl = parse_dacl(
        descriptor(ace(ALLOW_OBJ, CONTAINER_INHERIT | INHERIT_ONLY, DELETE_CHILD, SVC, GROUP_CLASS_GUID))
    )
    assert not may_delete_children(dacl, token_sids(SVC, []))


def test_full_control_of_descendant_group_objects_allows_delete() -> None:
    # "Full control" on "Descendant Group objects": an inherit-only ACE for groups, with DELETE on them.
    full = ace(ALLOW_OBJ, CONTAINER_INHERIT | INHERIT_ONLY, FULL_CONTROL, SVC, None, GROUP_CLASS_GUID)
    assert may_delete_children(parse_dacl(descriptor(full)), token_sids(SVC, []))
    for_users = ace(ALLOW_OBJ, CONTAINER_INHERIT | INHERIT_ONLY, DELETE, SVC, None, USER_CLASS)
    assert not may_delete_children(parse_dacl(descriptor(for_users)), token_sids(SVC, []))
    not_inherited = ace(ALLOW, 0, DELETE, SVC)  # DELETE on the OU itself, not on its children
    assert not may_delete_children(parse_dacl(descriptor(not_inherited)), token_sids(SVC, []))


def test_everyone_and_authenticated_users_are_in_every_token() -> None:
    assert token_sids(SVC, [OTHER]) == {SVC, OTHER, EVERYONE, AUTHENTICATED_USERS}
    dacl = parse_dacl(descriptor(ace(ALLOW_OBJ, 0, DELETE_CHILD, AUTHENTICATED_USERS, GROUP_CLASS_GUID)))
    assert may_delete_children(dacl, token_sids(SVC, []))


def test_no_dacl_and_malformed_descriptors() -> None:
    assert parse_dacl(struct.pack("<BBHIIII", 1, 0, 0x8000, 0, 0, 0, 0)) == []
    with pytest.raises(ValueError):
        parse_dacl(b"\x01\x00")
    truncated = descriptor(ace(ALLOW, 0, FULL_CONTROL, DOMAIN_ADMINS))[:-6]
    with pytest.raises(ValueError):
        parse_dacl(truncated)
