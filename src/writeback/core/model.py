"""Immutable values shared by the pure core and the adapters.

Cloud side: what Microsoft Graph says (users, groups, member references). Directory side: what Active
Directory holds. Desired side: what AD must look like, computed by :mod:`writeback.core.mapping`.
No I/O here, no vendor imports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter
from typing import Any

from writeback.core.dn import join_rdn

# AD groupType bits (MS-ADTS 2.2.12).
GROUP_TYPE_GLOBAL = 0x2
GROUP_TYPE_DOMAIN_LOCAL = 0x4
GROUP_TYPE_UNIVERSAL = 0x8
GROUP_TYPE_SECURITY = -0x80000000  # 0x80000000 as the signed 32-bit value AD stores
UNIVERSAL_SECURITY = GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY  # -2147483640

# An AD attribute value writeback writes or reads back: one string, several (a multi-valued attribute such as
# proxyAddresses, compared as a set), or None (absent / to be cleared).
AttributeValue = str | tuple[str, ...] | None

ANCHOR_PREFIX = "Group_"
DYNAMIC_ANCHOR_PREFIX = (
    "WritebackDynamic_"  # on-prem dynamic groups (see writeback.core.desired.dynamic_intents)
)
DYNAMIC_KEY_PREFIX = "dynamic:"
ANCHOR_PREFIXES = (ANCHOR_PREFIX, DYNAMIC_ANCHOR_PREFIX)  # every group anchor writeback writes
# Users are the second kind of target (issue 24): anchored msDS-ExternalDirectoryObjectId = User_<objectId>, the
# value Cloud Sync's user provisioning to AD writes.
USER_ANCHOR_PREFIX = "User_"
# What a plan's change or report is about (Change.target, GroupReport.target): a group unless it says so.
TARGET_GROUP = "group"
TARGET_USER = "user"


def member_kind_from_odata(odata_type: str | None) -> str:
    """'#microsoft.graph.user' -> 'user'. Unknown types keep their suffix; None -> 'user'."""
    if not odata_type:
        return "user"
    return odata_type.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True, order=True)
class MemberRef:
    """A direct member of a cloud group: its Graph object kind and id."""

    kind: str
    id: str


# MemberRef's own order as a sort key: the same order, compared in C instead of by the dataclass's __lt__
# (which showed in the planning profile of big groups: docs/benchmarks.md, "Measurements behind the code").
MEMBER_ORDER = attrgetter("kind", "id")


class FrozenAttributes(Mapping[str, Any]):
    """A read-only mapping as a replica snapshot holds a cloud user's other properties (``CloudUser.attributes``).

    The names' positions are one dict shared by every user with the same properties, the values one tuple:
    about 150 bytes a user where a dict of its own costs 360 (issue 27: a snapshot holds every user of the
    tenant while a plan is made; 252,000 of them for a 250,000-member group). Equal to a dict of the same
    items, as a Mapping is."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping[str, int], values: tuple[Any, ...]) -> None:
        if len(index) != len(values):
            raise ValueError("FrozenAttributes: as many values as names")
        self._index = index
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[self._index[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return repr(dict(self))


@dataclass(frozen=True, slots=True)
class CloudUser:
    """A Graph user. ``attributes`` holds every other property Graph returned (for rules and filters)."""

    id: str
    display_name: str | None = None
    user_principal_name: str | None = None
    account_enabled: bool | None = None
    on_premises_sync_enabled: bool | None = None
    on_premises_security_identifier: str | None = None
    on_premises_immutable_id: str | None = None
    on_premises_distinguished_name: str | None = None
    on_premises_domain_name: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False  # soft-deleted (in deletedItems, restorable)
    # onPremisesSyncBehavior.isCloudManaged (Graph beta, users as groups): the user's source of authority was
    # converted to the cloud (user SOA, GA January 2026). None: not read, or never set.
    is_cloud_managed: bool | None = None

    @property
    def is_synced(self) -> bool:
        return bool(self.on_premises_sync_enabled) or bool(self.on_premises_security_identifier)

    @property
    def soa_converted(self) -> bool:
        """Synced from AD, source of authority moved to the cloud: written in place into its original AD
        account (matched by onPremisesSecurityIdentifier, never by UPN or mail). As for groups:
        https://learn.microsoft.com/graph/api/resources/onpremisessyncbehavior?view=graph-rest-beta (users,
        groups and orgContacts)"""
        return (
            bool(self.on_premises_security_identifier)
            and self.is_cloud_managed is True
            and not self.on_premises_sync_enabled
        )

    @property
    def anchor(self) -> str:
        """The anchor writeback stamps on this user's AD account: ``User_<objectId>``."""
        return USER_ANCHOR_PREFIX + self.id

    def graph_properties(self) -> dict[str, Any]:
        """The user as Graph names its properties (a v1.0 user resource): what rules and mapping expressions
        read. ``attributes`` (every other property Graph returned) first, the typed fields over them."""
        d: dict[str, Any] = dict(self.attributes)
        d.update(
            id=self.id,
            displayName=self.display_name,
            userPrincipalName=self.user_principal_name,
            accountEnabled=self.account_enabled,
            onPremisesSyncEnabled=self.on_premises_sync_enabled,
            onPremisesSecurityIdentifier=self.on_premises_security_identifier,
            onPremisesImmutableId=self.on_premises_immutable_id,
            onPremisesDistinguishedName=self.on_premises_distinguished_name,
            onPremisesDomainName=self.on_premises_domain_name,
        )
        return d

    @property
    def is_guest(self) -> bool:
        """userType Guest: an external (B2B) user (https://learn.microsoft.com/graph/api/resources/user)."""
        return str(self.attributes.get("userType") or "").lower() == "guest"


@dataclass(frozen=True, slots=True)
class CloudGroup:
    """A Graph group with its direct members."""

    id: str
    display_name: str = ""
    description: str | None = None
    mail_nickname: str | None = None
    mail_enabled: bool = False
    security_enabled: bool | None = True  # None: Graph did not say; scope treats it as not security
    group_types: tuple[str, ...] = ()
    on_premises_sync_enabled: bool | None = None
    membership_rule: str | None = None
    membership_rule_processing_state: str | None = None
    writeback_enabled: bool | None = None  # beta writebackConfiguration.isEnabled
    writeback_group_type: str | None = None  # beta writebackConfiguration.onPremisesGroupType
    attributes: Mapping[str, Any] = field(default_factory=dict)
    members: frozenset[MemberRef] = frozenset()
    deleted: bool = False  # soft-deleted (in deletedItems, restorable)
    # -- Taking over (issue 13, mail-takeover) ----------------------------------------------------------
    # The objectSid (SDDL string) of the AD group this group was synced from; Graph keeps it after a Group
    # Source of Authority conversion, and it is what ties the cloud group to its original AD group.
    on_premises_security_identifier: str | None = None
    # Beta onPremisesSyncBehavior.isCloudManaged: True after an SOA conversion, False when rolled back (or
    # never converted); None when not read (only groups synced from AD are asked).
    is_cloud_managed: bool | None = None

    @property
    def from_ad(self) -> bool:
        """Synced from AD now, or once (an SOA-converted or rolled-back group keeps its SID)."""
        return bool(self.on_premises_sync_enabled) or bool(self.on_premises_security_identifier)

    @property
    def soa_converted(self) -> bool:
        """Synced from AD, source of authority moved to the cloud: states (isCloudManaged/onPremisesSyncEnabled)
        true/null. https://learn.microsoft.com/entra/identity/hybrid/concept-group-source-of-authority-guidance"""
        return (
            bool(self.on_premises_security_identifier)
            and self.is_cloud_managed is True
            and not self.on_premises_sync_enabled
        )

    # -- Mail and Microsoft 365 groups (issue 13, group types): Graph's mail, proxyAddresses, visibility.
    mail: str | None = None
    proxy_addresses: tuple[str, ...] = ()
    visibility: str | None = None  # Public, Private, HiddenMembership (Microsoft 365 groups)

    @property
    def is_dynamic(self) -> bool:
        return "DynamicMembership" in self.group_types

    @property
    def is_unified(self) -> bool:
        return "Unified" in self.group_types

    @property
    def is_mail_group(self) -> bool:
        """A group Exchange knows as a recipient: a Microsoft 365 group or a mail-enabled (security) group."""
        return self.mail_enabled or self.is_unified

    @property
    def anchor(self) -> str:
        return ANCHOR_PREFIX + self.id


@dataclass(frozen=True, slots=True)
class CloudSnapshot:
    """The cloud as the engine sees it at one moment (from the local replica)."""

    users: Mapping[str, CloudUser]
    groups: Mapping[str, CloudGroup]
    # The tenant's NewUnifiedGroupWritebackDefault (directory setting "Group.Unified"): False stops Microsoft
    # 365 groups whose writebackConfiguration.isEnabled is null from being written back; None when the tenant
    # has no such setting (Microsoft's default: written back) or it was not read.
    unified_writeback_default: bool | None = None


@dataclass(frozen=True, slots=True)
class DirectoryAccount:
    """An AD object that can be a group member (user, group, contact)."""

    dn: str
    object_guid: str  # canonical lower-case UUID string
    object_sid: str | None = None
    object_class: str = "user"  # most specific structural class: user, group, contact, computer
    group_type: int | None = None


@dataclass(frozen=True, slots=True)
class DirectoryGroup:
    """An AD group as read from the directory. ``anchor`` is 'Group_<id>' when writeback owns it."""

    dn: str
    object_guid: str
    anchor: str | None
    sam_account_name: str | None
    group_type: int
    attributes: Mapping[
        str, AttributeValue
    ]  # mapped attributes: description, displayName, proxyAddresses, ...
    members: frozenset[str]  # member DNs as the directory returned them
    protected: bool = False  # one of AD's protected or privileged groups (writeback.core.protected)
    object_sid: str | None = None  # SDDL string (S-1-5-21-...), for groups found by SID
    # Of the attributes writeback writes, those the bound account may write on this group, as the DC computed
    # them (allowedAttributesEffective, MS-ADTS 3.1.1.4.5.7), read with the group itself; None when not read.
    # The plan holds the changes of a group that needs one it lacks (writeback.core.rights).
    writable: frozenset[str] | None = None

    @property
    def cloud_id(self) -> str | None:
        """The key the planner matches on: the cloud object id, or 'dynamic:<id>' for on-prem dynamic groups."""
        return self.key_of(self.anchor)

    @staticmethod
    def key_of(anchor: str | None) -> str | None:
        """The plan key an anchor value names: the cloud id of 'Group_<id>', 'dynamic:<id>' of a dynamic one."""
        if anchor and anchor.startswith(ANCHOR_PREFIX):
            return anchor[len(ANCHOR_PREFIX) :]
        if anchor and anchor.startswith(DYNAMIC_ANCHOR_PREFIX):
            return DYNAMIC_KEY_PREFIX + anchor[len(DYNAMIC_ANCHOR_PREFIX) :]
        return None


class SkipReason(str, Enum):
    """Why a cloud member is not written to AD."""

    CLOUD_ONLY = "cloud-only user (not synced from AD)"
    GUEST = "guest user (userType Guest, not synced from AD): no AD account to write"
    SOFT_DELETED = "user is soft-deleted in the cloud"
    NOT_FOUND_IN_AD = "synced user not found in AD"
    UNSUPPORTED_KIND = "object type not written to AD"
    GROUP_OUT_OF_SCOPE = "nested group is not in writeback scope"
    UNKNOWN_OBJECT = "member not found in the cloud replica"
    LOCAL_IN_UNIVERSAL = "8518: A universal group cannot have a local group as a member"


@dataclass(frozen=True, slots=True, order=True)
class SkippedMember:
    member_id: str
    kind: str
    reason: str
    name: str = ""  # display name or UPN when the replica knows it


@dataclass(frozen=True, slots=True)
class GroupError:
    """A managed AD group (or several carrying one anchor) that a plan leaves alone, and why.

    The desired state finds these once; the plan reports them and never changes, moves or deletes them."""

    key: str  # the plan key: cloud id, or 'dynamic:<id>'
    dn: str | None  # None when several AD groups carry the anchor (the message names them all)
    message: str
    name: str = ""  # display name, when the cloud or AD says one


@dataclass(frozen=True, slots=True)
class DesiredGroup:
    """What AD must hold for one in-scope cloud group."""

    cloud_id: str
    anchor: str
    cn: str
    parent_dn: str
    sam_account_name: str
    group_type: int
    attributes: Mapping[str, AttributeValue]  # description, displayName, and the anchor attribute(s)
    members: frozenset[str]  # member DNs
    skipped: tuple[SkippedMember, ...] = ()
    error: str | None = None  # set when the group cannot be written (member cap, 8518, ...)
    # Attributes whose mapping uses Redact(): written to AD, shown as "[redacted]" in plans and logs.
    redacted: frozenset[str] = frozenset()

    @property
    def dn(self) -> str:
        return join_rdn("CN", self.cn, self.parent_dn)


@dataclass(frozen=True, slots=True)
class Intent:
    """A desired group as far as it is known without asking AD."""

    key: str  # cloud object id, or 'dynamic:<id>'
    anchor: str  # Group_<id> or WritebackDynamic_<id>
    name: str  # for reports: the cloud display name or the configured name
    cn: str
    parent_dn: str
    group_type: int
    attributes: Mapping[str, AttributeValue]  # mapped attributes, without the anchor attribute(s)
    sam_candidates: tuple[str, ...]
    sam_mapped: bool  # sAMAccountName mapped explicitly: the mapping wins over the name the group has
    members: tuple[MemberRef, ...] = ()  # cloud members, resolved against AD by the desired state
    member_dns: frozenset[str] = frozenset()  # members already known as AD DNs (on-prem dynamic groups)
    error: str | None = None
    redacted: frozenset[str] = frozenset()  # attributes mapped with Redact(): hidden in plans and logs
    # Taking over (issue 13): an SOA-converted group is written into the AD group of this SID (upper-cased).
    original_sid: str | None = None

    @property
    def dn(self) -> str:
        return join_rdn("CN", self.cn, self.parent_dn)


# -- Users as targets (issue 24, ``[users] provision = "soa"``) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """An AD account as read to be written into (an SOA user's original account, or one writeback anchored).

    ``anchor`` is ``User_<id>`` when the account carries a writeback user anchor (whoever stamped it)."""

    dn: str
    object_guid: str
    object_sid: str | None
    anchor: str | None
    attributes: Mapping[
        str, AttributeValue
    ]  # the mapped attributes and the anchor attribute(s), None if absent
    object_class: str = "user"  # most specific structural class: user, inetOrgPerson, computer, group, ...
    protected: bool = (
        False  # AdminSDHolder-protected (adminCount), critical or well-known (writeback.core.protected)
    )
    writable: frozenset[str] | None = (
        None  # allowedAttributesEffective, as for groups (writeback.core.rights)
    )

    @property
    def cloud_id(self) -> str | None:
        """The cloud user id its anchor names, or None."""
        if self.anchor and self.anchor.startswith(USER_ANCHOR_PREFIX):
            return self.anchor[len(USER_ANCHOR_PREFIX) :]
        return None

    @property
    def is_user_account(self) -> bool:
        """A user object (inetOrgPerson is a subclass of user); not a computer, group or contact."""
        return self.object_class.lower() in ("user", "inetorgperson")


@dataclass(frozen=True, slots=True)
class UserIntent:
    """A cloud user writeback wants written into AD, as far as it is known without asking AD."""

    key: str  # the cloud user's object id
    anchor: str  # User_<objectId>
    name: str  # for reports: the display name or UPN
    sid: str  # onPremisesSecurityIdentifier, upper-cased: the original AD account is found by it, only by it
    attributes: Mapping[str, AttributeValue]  # mapped attributes (IgnoreFlowIfNullOrEmpty ones left out)
    redacted: frozenset[str] = frozenset()
    # A cloud-only member ([users] provision = "cloud_members"; ``sid`` is then ""): the account writeback
    # creates for it, matched by its anchor only. Cloud Sync's default names: CN, parent OU, sAMAccountName
    # choices in preference order (each <= 20 characters) and the UPN prefix; and accountEnabled.
    create: bool = False
    cn: str = ""
    parent_dn: str = ""
    sam_candidates: tuple[str, ...] = ()
    upn_prefix: str = ""
    enabled: bool = True

    @property
    def dn(self) -> str:
        return join_rdn("CN", self.cn, self.parent_dn)


@dataclass(frozen=True, slots=True)
class DesiredUser:
    """What one AD user account must hold: its mapped attributes and the anchor, at the DN it has."""

    cloud_id: str
    anchor: str
    dn: str  # the account's own DN: never changed
    name: str
    attributes: Mapping[str, AttributeValue]  # mapped attributes and the anchor attribute
    error: str | None = None  # set when the account cannot be written (not found, protected, ...)
    redacted: frozenset[str] = frozenset()
    # An account writeback creates (cloud_members): ``dn`` is where it is (or goes), with the names it gets
    # (a new account) or has. ``enabled``: the ACCOUNTDISABLE bit wanted (None: never changed, as for SOA
    # users); ``smart_card``: SMARTCARD_REQUIRED on create.
    create: bool = False
    sam_account_name: str = ""
    user_principal_name: str = ""
    enabled: bool | None = None
    smart_card: bool = False
