"""Turn raw LDAP entries into the model's values (pure: no connection needed).

AD stores objectGUID and objectSid as binary, everything else used here as UTF-8 text. Attribute keys must
already be lower-cased (:func:`writeback.adapters.directory.codec.lower_keys`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping, Sequence

from writeback.adapters.directory.codec import (
    first_str,
    guid_to_str,
    most_specific_class,
    sid_to_str,
)
from writeback.core.dn import rdn_value
from writeback.core.mapping import MULTI_VALUED_ATTRIBUTES
from writeback.core.model import (
    ANCHOR_PREFIXES,
    USER_ANCHOR_PREFIX,
    AttributeValue,
    DirectoryAccount,
    DirectoryGroup,
    DirectoryUser,
)
from writeback.core.protected import protection

# allowedAttributesEffective ([MS-ADTS] 3.1.1.4.5.7): the attributes the bound account may write on the group,
# computed by the DC from its security descriptor. Asked with every group read, so rights are known before
# apply without a read of their own (writeback.core.rights); measured on the sandbox in docs/least-privilege.md.
ALLOWED_ATTRIBUTES_EFFECTIVE = "allowedAttributesEffective"
GROUP_ATTRIBUTES = (
    "objectGUID",
    "objectSid",
    "sAMAccountName",
    "groupType",
    "adminCount",
    "isCriticalSystemObject",
    "member",
    ALLOWED_ATTRIBUTES_EFFECTIVE,
)
# What writeback writes on an existing group besides its mapped and anchor attributes: members, the scope it
# restores, a mapped sAMAccountName, and the RDN attributes a rename writes.
WRITTEN_ATTRIBUTES = ("member", "groupType", "sAMAccountName", "cn", "name")
ACCOUNT_ATTRIBUTES = ("objectGUID", "objectSid", "objectClass", "groupType")
# A user account read to be written into ([users] provision = "soa"): its keys, its class (an object of the
# SID that is not a user is reported), what marks it protected, and the rights the bound account has on it.
USER_ATTRIBUTES = (
    "objectGUID",
    "objectSid",
    "objectClass",
    "sAMAccountName",
    "adminCount",
    "isCriticalSystemObject",
    ALLOWED_ATTRIBUTES_EFFECTIVE,
)


def _sid(attrs: Mapping[str, list[bytes]]) -> str | None:
    values = attrs.get("objectsid")
    return sid_to_str(values[0]) if values else None


def _int(attrs: Mapping[str, list[bytes]], name: str) -> int | None:
    text = first_str(attrs, name)
    return int(text) if text is not None else None


def find_anchor(
    attrs: Mapping[str, list[bytes]],
    anchor_attributes: Sequence[str],
    prefixes: Sequence[str] = ANCHOR_PREFIXES,
) -> str | None:
    """The value of the first anchor attribute, in the given order, that starts with one of ``prefixes``."""
    for name in anchor_attributes:
        value = first_str(attrs, name)
        if value is not None and value.startswith(tuple(prefixes)):
            return value
    return None


def is_protected(attrs: Mapping[str, list[bytes]], dn: str | None = None) -> bool:
    """One of AD's protected or privileged groups (:func:`writeback.core.protected.protection` decides); ``dn``
    gives its CN."""
    admin_count = first_str(attrs, "adminCount")
    try:
        count = int(admin_count) if admin_count is not None else None
    except ValueError:
        count = 1  # unreadable: count it as set, the safe side
    return (
        protection(
            object_sid=_sid(attrs),
            sam_account_name=first_str(attrs, "sAMAccountName"),
            cn=_cn(dn) if dn else None,
            admin_count=count,
            critical_system_object=(first_str(attrs, "isCriticalSystemObject") or "").upper() == "TRUE",
        )
        is not None
    )


def _cn(dn: str) -> str | None:
    try:
        return rdn_value(dn)
    except (IndexError, ValueError):
        return None


def _value(attrs: Mapping[str, list[bytes]], name: str) -> AttributeValue:
    """An attribute as writeback compares it: every value of a multi-valued one (proxyAddresses), else the first."""
    if name in MULTI_VALUED_ATTRIBUTES:
        values = attrs.get(name.lower()) or []
        return tuple(v.decode("utf-8", errors="replace") for v in values) or None
    return first_str(attrs, name)


def group_from_entry(
    dn: str,
    attrs: Mapping[str, list[bytes]],
    members: Sequence[str],
    anchor_attributes: Sequence[str],
    mapped: Sequence[str],
    prefixes: Sequence[str] = ANCHOR_PREFIXES,
) -> DirectoryGroup:
    """A :class:`DirectoryGroup`; ``members`` is the complete member list (ranged reads already followed).

    ``attributes`` holds the mapped attributes and the anchor attributes, each None when absent, so the
    planner can compare every attribute it writes.
    """
    guid = attrs.get("objectguid")
    if not guid:
        raise ValueError(f"{dn} has no objectGUID")
    names = dict.fromkeys([*mapped, *anchor_attributes])
    return DirectoryGroup(
        dn=dn,
        object_guid=guid_to_str(guid[0]),
        anchor=find_anchor(attrs, anchor_attributes, prefixes),
        sam_account_name=first_str(attrs, "sAMAccountName"),
        group_type=_int(attrs, "groupType") or 0,
        attributes={name: _value(attrs, name) for name in names},
        # One string per DN in the process (issue 17, memory): a user in many groups, and the same user
        # resolved as an account, share one string instead of a copy per member value read.
        members=frozenset(map(sys.intern, members)),
        protected=is_protected(attrs, dn),
        object_sid=_sid(attrs),
        writable=writable_attributes(
            tuple(attrs.get(ALLOWED_ATTRIBUTES_EFFECTIVE.lower(), ())),
            tuple(dict.fromkeys([*WRITTEN_ATTRIBUTES, *mapped, *anchor_attributes])),
        ),
    )


@functools.lru_cache(maxsize=64)
def writable_attributes(allowed: tuple[bytes, ...], written: tuple[str, ...]) -> frozenset[str]:
    """Of ``written`` (as writeback spells them), those named in an ``allowedAttributesEffective`` answer.

    AD leaves the attribute out of an entry when the account may write nothing there: then none. Cached:
    the groups of one OU share one answer, so a plan of 10,000 groups holds a few sets, not 10,000."""
    names = {v.decode("utf-8", errors="replace").lower() for v in allowed}
    return frozenset(a for a in written if a.lower() in names)


def account_from_entry(dn: str, attrs: Mapping[str, list[bytes]]) -> DirectoryAccount:
    guid = attrs.get("objectguid")
    if not guid:
        raise ValueError(f"{dn} has no objectGUID")
    classes = [v.decode("utf-8") for v in attrs.get("objectclass", [])]
    return DirectoryAccount(
        dn=sys.intern(dn),
        object_guid=guid_to_str(guid[0]),
        object_sid=_sid(attrs),
        object_class=most_specific_class(classes),
        group_type=_int(attrs, "groupType"),
    )


def user_from_entry(
    dn: str, attrs: Mapping[str, list[bytes]], anchor_attributes: Sequence[str], mapped: Sequence[str]
) -> DirectoryUser:
    """A :class:`DirectoryUser`; ``attributes`` holds the mapped and anchor attributes, None when absent.
    Protected as groups are (:func:`is_protected`: adminCount from AdminSDHolder, critical system objects,
    well-known RIDs such as Administrator 500 and krbtgt 502)."""
    guid = attrs.get("objectguid")
    if not guid:
        raise ValueError(f"{dn} has no objectGUID")
    classes = [v.decode("utf-8") for v in attrs.get("objectclass", [])]
    names = dict.fromkeys([*mapped, *anchor_attributes])
    return DirectoryUser(
        dn=dn,
        object_guid=guid_to_str(guid[0]),
        object_sid=_sid(attrs),
        anchor=find_anchor(attrs, anchor_attributes, (USER_ANCHOR_PREFIX,)),
        attributes={name: _value(attrs, name) for name in names},
        object_class=most_specific_class(classes),
        protected=is_protected(attrs, dn),
        writable=writable_attributes(
            tuple(attrs.get(ALLOWED_ATTRIBUTES_EFFECTIVE.lower(), ())),
            tuple(dict.fromkeys([*mapped, *anchor_attributes])),
        ),
    )
