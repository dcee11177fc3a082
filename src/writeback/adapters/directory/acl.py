"""Reading an AD security descriptor's DACL, enough to tell whether an account may delete groups in an OU.

AD exposes create and write rights as constructed attributes (``allowedChildClassesEffective``,
``allowedAttributesEffective``) but has no such attribute for Delete, so ``config check`` reads the OU's
``nTSecurityDescriptor`` and walks its DACL for the bound account's SIDs (its ``tokenGroups``).

Written here rather than taken from a library: only the self-relative layout of MS-DTYP 2.4.6 (header, ACL,
four ACE types) is needed, a few dozen lines; the Python libraries that parse descriptors (impacket, winacl)
bring whole protocol stacks with them. The walk is the access check of MS-DTYP 2.5.3.2 for one right: ACEs in
stored order, the first that matches the caller and the right decides (deny or allow). Owner-implied rights
(read and write the DACL) never include Delete, so they are left out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from writeback.adapters.directory.codec import guid_to_str, sid_to_str

# ACE types (MS-DTYP 2.4.4.1) that carry access rights for a SID.
ACCESS_ALLOWED = 0x00
ACCESS_DENIED = 0x01
ACCESS_ALLOWED_OBJECT = 0x05
ACCESS_DENIED_OBJECT = 0x06
_ALLOW_TYPES = (ACCESS_ALLOWED, ACCESS_ALLOWED_OBJECT)
_OBJECT_TYPES = (ACCESS_ALLOWED_OBJECT, ACCESS_DENIED_OBJECT)

# ACE flags (MS-DTYP 2.4.4.1).
OBJECT_INHERIT = 0x01
CONTAINER_INHERIT = 0x02
INHERIT_ONLY = 0x08

# Object ACE flags: which of the two GUIDs are present.
_OBJECT_TYPE_PRESENT = 0x1
_INHERITED_OBJECT_TYPE_PRESENT = 0x2

# Access mask bits (MS-ADTS 5.1.3.2).
DELETE_CHILD = 0x00000002  # ADS_RIGHT_DS_DELETE_CHILD: delete children of the object types named
DELETE = 0x00010000  # standard DELETE on the object itself
GENERIC_ALL = 0x10000000  # mapped to specific rights when AD stores a descriptor, but accepted anyway

GROUP_CLASS_GUID = "bf967a9c-0de6-11d0-a285-00aa003049e2"  # schemaIDGUID of the group class
EVERYONE = "S-1-1-0"
AUTHENTICATED_USERS = "S-1-5-11"

# SD_FLAGS control (MS-ADTS 3.1.1.3.4.1.11) asking for the DACL only: reading the SACL needs a privilege the
# service account does not have. The value is BER for SEQUENCE { INTEGER 4 }.
SD_FLAGS_OID = "1.2.840.113556.1.4.801"
SD_FLAGS_DACL_ONLY = b"\x30\x03\x02\x01\x04"


@dataclass(frozen=True)
class Ace:
    allow: bool
    flags: int
    mask: int
    sid: str
    object_type: str | None = None  # lower-case GUID; None = every object type
    inherited_object_type: str | None = None  # lower-case GUID; None = inherited by every child class

    @property
    def applies_here(self) -> bool:
        """Part of this object's own access check (not only a template for its children)."""
        return not self.flags & INHERIT_ONLY

    @property
    def inherited_by_children(self) -> bool:
        return bool(self.flags & (OBJECT_INHERIT | CONTAINER_INHERIT))


def parse_dacl(descriptor: bytes) -> list[Ace]:
    """The DACL's access ACEs of a self-relative security descriptor, in stored order (other ACE types, such
    as callback or audit ACEs, are skipped). An absent DACL gives an empty list. ValueError if malformed."""
    if len(descriptor) < 20:
        raise ValueError("security descriptor shorter than its header")
    dacl_offset = struct.unpack_from("<I", descriptor, 16)[0]
    if dacl_offset == 0:
        return []
    if dacl_offset + 8 > len(descriptor):
        raise ValueError("DACL offset beyond the descriptor")
    _revision, _sbz, _size, count, _sbz2 = struct.unpack_from("<BBHHH", descriptor, dacl_offset)
    return list(_aces(descriptor, dacl_offset + 8, count))


def _aces(data: bytes, offset: int, count: int) -> Iterator[Ace]:
    for _ in range(count):
        if offset + 8 > len(data):
            raise ValueError("ACE beyond the descriptor")
        ace_type, flags, size = struct.unpack_from("<BBH", data, offset)
        if size < 8 or offset + size > len(data):
            raise ValueError("ACE size out of range")
        body = data[offset + 4 : offset + size]
        if ace_type in (ACCESS_ALLOWED, ACCESS_DENIED):
            yield Ace(ace_type in _ALLOW_TYPES, flags, _mask(body), sid_to_str(body[4:]))
        elif ace_type in _OBJECT_TYPES:
            yield _object_ace(ace_type, flags, body)
        offset += size


def _mask(body: bytes) -> int:
    return int(struct.unpack_from("<I", body, 0)[0])


def _object_ace(ace_type: int, flags: int, body: bytes) -> Ace:
    present = struct.unpack_from("<I", body, 4)[0]
    pos = 8
    guids: list[str | None] = []
    for bit in (_OBJECT_TYPE_PRESENT, _INHERITED_OBJECT_TYPE_PRESENT):
        if present & bit:
            guids.append(guid_to_str(body[pos : pos + 16]).lower())
            pos += 16
        else:
            guids.append(None)
    return Ace(ace_type in _ALLOW_TYPES, flags, _mask(body), sid_to_str(body[pos:]), guids[0], guids[1])


def _decides(aces: list[Ace], token: Collection[str], right: int, relevant: Callable[[Ace], bool]) -> bool:
    """The access check for one right: the first ACE for the caller that names the right decides."""
    for ace in aces:
        if ace.sid in token and ace.mask & (right | GENERIC_ALL) and relevant(ace):
            return ace.allow
    return False


def may_delete_children(dacl: list[Ace], token: Collection[str], class_guid: str = GROUP_CLASS_GUID) -> bool:
    """Whether ``token`` (the caller's SIDs) may delete objects of ``class_guid`` directly under the object
    whose ``dacl`` this is: Delete Child on the container for that class, or Delete on the objects through
    an ACE they inherit."""
    cls = class_guid.lower()
    via_parent = _decides(
        dacl, token, DELETE_CHILD, lambda a: a.applies_here and a.object_type in (None, cls)
    )
    via_child = _decides(
        dacl,
        token,
        DELETE,
        lambda a: (
            a.inherited_by_children and a.inherited_object_type in (None, cls) and a.object_type is None
        ),
    )
    return via_parent or via_child


def token_sids(own_sid: str, token_groups: Collection[str]) -> set[str]:
    """The SIDs an access check of a signed-in account matches: its own, its groups' (``tokenGroups``,
    nested groups included), Everyone and Authenticated Users."""
    return {own_sid, *token_groups, EVERYONE, AUTHENTICATED_USERS}


__all__ = [
    "GROUP_CLASS_GUID",
    "SD_FLAGS_DACL_ONLY",
    "SD_FLAGS_OID",
    "Ace",
    "may_delete_children",
    "parse_dacl",
    "token_sids",
]
