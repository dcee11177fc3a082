"""Cloud group -> desired AD group: names, anchor, attributes, group type and resolved members. Pure.

Defaults follow Entra Cloud Sync's attribute mappings so writeback can take over groups Microsoft wrote:
CN ``Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))``, anchor ``Group_<objectId>`` in
msDS-ExternalDirectoryObjectId (adminDescription when the schema lacks it), universal security groupType.

Mail groups (Microsoft 365 groups, mail-enabled security groups, distribution lists) follow Connect Sync group
writeback, the Microsoft product that wrote them: the AD kind is ``writebackConfiguration.onPremisesGroupType``
(unset: a Microsoft 365 group becomes a universal distribution group), always universal; a mail kind carries
``mail``, the primary ``SMTP:`` address in ``proxyAddresses`` (Connect writes only the primary one back),
``mailNickname`` and the Exchange recipient attributes, which exist only where the forest has Exchange's schema
(the desired state drops attributes the schema lacks and says so once in the plan).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from writeback.config import GROUP_SCOPES, MappingSettings
from writeback.core.dn import is_within
from writeback.core.expressions import Expression, Source, compile_expression
from writeback.core.model import (
    GROUP_TYPE_DOMAIN_LOCAL,
    GROUP_TYPE_GLOBAL,
    GROUP_TYPE_SECURITY,
    GROUP_TYPE_UNIVERSAL,
    MEMBER_ORDER,
    AttributeValue,
    CloudGroup,
    CloudUser,
    Intent,
    UserIntent,
)
from writeback.core.text import without_controls
from writeback.errors import ConfigError

MSDS_ANCHOR = "msDS-ExternalDirectoryObjectId"
ADMIN_DESCRIPTION = "adminDescription"
# Where a user's anchor User_<objectId> goes: msDS-ExternalDirectoryObjectId only. adminDescription = User_...
# would make Entra Connect's default inbound rules skip the account (see writeback.core.desired, users).
USER_ANCHOR_ATTRIBUTES = (MSDS_ANCHOR,)
CN_MAX = 64  # AD's rangeUpper for cn (Samba accepts more; AD does not)
SAM_MAX = 64
DEFAULT_SAM_MAX = 20  # pre-Windows 2000 compatible length
# sAMAccountName "cannot contain any of these characters: " / \ [ ] : ; | = , + * ? < >" (SAM-Account-Name
# attribute, https://learn.microsoft.com/windows/win32/adschema/a-samaccountname), nor "characters in the range
# 1-31, which are nonprintable" (USER_INFO_0 remarks,
# https://learn.microsoft.com/windows/win32/api/lmaccess/ns-lmaccess-user_info_0): AD refuses an ESC with
# "sAMAccountName contains invalid 0x1b" at every try. NUL, DEL and the C1 controls (U+0080-U+009F) go too: no
# one types them, and a terminal acts on them. Whitespace and '@' are writeback's own choice (logon names).
_SAM_INVALID = re.compile(r'["/\\\[\]:;|=,+*?<>@\s\x00-\x1f\x7f-\x9f]')
SCOPE_BITS = {
    "universal": GROUP_TYPE_UNIVERSAL,
    "global": GROUP_TYPE_GLOBAL,
    "domainLocal": GROUP_TYPE_DOMAIN_LOCAL,
}

# writebackConfiguration.onPremisesGroupType values (Graph beta groupWritebackConfiguration: "Microsoft 365
# groups may take any; security groups only universalSecurityGroup").
UNIVERSAL_DISTRIBUTION = "universalDistributionGroup"
UNIVERSAL_SECURITY = "universalSecurityGroup"
UNIVERSAL_MAIL_SECURITY = "universalMailEnabledSecurityGroup"
ON_PREMISES_GROUP_TYPES = (UNIVERSAL_DISTRIBUTION, UNIVERSAL_SECURITY, UNIVERSAL_MAIL_SECURITY)
# Base-schema mail attributes of a group (mailNickname is Exchange's ms-Exch-Mail-Nickname: a forest without
# Exchange's schema lacks it, and the desired state then leaves it out).
MAIL_ATTRIBUTES = ("mail", "proxyAddresses", "mailNickname")
MULTI_VALUED_ATTRIBUTES = frozenset({"proxyAddresses"})  # read back and written as several values
# The Exchange recipient attributes that make the AD group a recipient of the right kind for Exchange. Microsoft
# documents no list of what Connect stamps on written-back groups; these are the two Exchange reads to tell a
# recipient's kind (attribute names and OIDs: Exchange schema, ms-Exch-Recipient-Display-Type
# 1.2.840.113556.1.4.7000.102.50730 and ms-Exch-Recipient-Type-Details 1.2.840.113556.1.4.7000.102.50855).
EXCHANGE_ATTRIBUTES = ("msExchRecipientDisplayType", "msExchRecipientTypeDetails")
# Exchange's RecipientTypeDetails and RecipientDisplayType values: MailUniversalDistributionGroup (0x100) with
# display type DistributionGroup (1); MailUniversalSecurityGroup (0x400) with display type SecurityDistributionGroup
# (0x40000009 = 1073741833, the ACL-able flag on a distribution list).
_EXCHANGE_VALUES = {
    UNIVERSAL_DISTRIBUTION: {"msExchRecipientDisplayType": "1", "msExchRecipientTypeDetails": "256"},
    UNIVERSAL_MAIL_SECURITY: {
        "msExchRecipientDisplayType": "1073741833",
        "msExchRecipientTypeDetails": "1024",
    },
}


def on_premises_group_type(group: CloudGroup) -> str | None:
    """The AD kind a mail group is written as (an onPremisesGroupType value); None for a cloud security group
    without mail, whose type follows ``mapping.group_scope``.

    A Microsoft 365 group takes its writebackConfiguration.onPremisesGroupType, universalDistributionGroup when
    unset (Connect v2's default); a mail-enabled security group is a mail-enabled security group and a
    distribution list a distribution group (Graph refuses other values for non-Microsoft 365 groups).
    """
    if group.is_unified:
        wanted = group.writeback_group_type
        return wanted if wanted in ON_PREMISES_GROUP_TYPES else UNIVERSAL_DISTRIBUTION
    if group.mail_enabled:
        return UNIVERSAL_MAIL_SECURITY if group.security_enabled else UNIVERSAL_DISTRIBUTION
    return None


def mail_attributes(
    group: CloudGroup, kind: str | None, secondary: bool = False
) -> dict[str, AttributeValue]:
    """The mail and Exchange attributes of the AD group for ``kind`` (see :func:`on_premises_group_type`).

    A mail group written as a plain security group gets them cleared (None): after a type change in place, the
    AD group must stop being a recipient. A cloud security group without mail gets none (keys absent), so a
    ``mapping.attributes`` entry for them is never overridden. ``secondary`` (``mapping.secondary_smtp_addresses``)
    adds the group's secondary ``smtp:`` addresses to proxyAddresses (then a multi-valued value, compared as a set).
    """
    if kind is None:
        return {}
    names = (*MAIL_ATTRIBUTES, *EXCHANGE_ATTRIBUTES)
    if kind == UNIVERSAL_SECURITY:
        return dict.fromkeys(names)
    mail = group.mail or primary_smtp(group.proxy_addresses)
    proxies: AttributeValue = f"SMTP:{mail}" if mail else None
    if secondary and mail:
        others = [p for p in group.proxy_addresses if p.startswith("smtp:") and p[5:].lower() != mail.lower()]
        proxies = (f"SMTP:{mail}", *dict.fromkeys(others))
    return {
        "mail": mail,
        # By default only the primary address: "only the primary SMTP address is written back" (Connect v1).
        "proxyAddresses": proxies,
        "mailNickname": group.mail_nickname or None,
        **_EXCHANGE_VALUES[kind],
    }


def primary_smtp(proxy_addresses: Iterable[str]) -> str | None:
    """The primary SMTP address: the proxy address with the upper-case ``SMTP:`` prefix."""
    return next((p[5:] for p in proxy_addresses if p.startswith("SMTP:")), None)


def group_type_change_refused(current: int, desired: int) -> str | None:
    """Why AD refuses changing ``groupType`` from ``current`` to ``desired`` in one modify, or None.

    Security <-> distribution is allowed at any time (domain functional level Windows 2000 native or higher); a
    scope change goes through universal: global <-> domain local is refused ("Active Directory security groups",
    Group scope: https://learn.microsoft.com/windows-server/identity/ad-ds/manage/understand-security-groups).
    AD also refuses universal -> global while the group has universal members, global -> universal while it is
    a member of a global group and domain local -> universal while it has domain local members; those depend on
    memberships and are reported by AD when the change is applied.
    """
    scopes = GROUP_TYPE_GLOBAL | GROUP_TYPE_DOMAIN_LOCAL | GROUP_TYPE_UNIVERSAL
    old, new = current & scopes, desired & scopes
    if {old, new} == {GROUP_TYPE_GLOBAL, GROUP_TYPE_DOMAIN_LOCAL}:
        names = {GROUP_TYPE_GLOBAL: "global", GROUP_TYPE_DOMAIN_LOCAL: "domain local"}
        return (
            f"AD cannot change a {names[old]} group to {names[new]} directly; change its scope to universal "
            "first (mapping.group_scope), apply, then to the final scope"
        )
    return None


def anchor_attributes(mode: str, schema_has_msds: bool) -> tuple[str, ...]:
    """Which attributes writeback writes ``Group_<objectId>`` to (``mapping.anchor``); the first is the one
    searched for first."""
    if mode == "both":
        return read_anchor_attributes(schema_has_msds)
    if mode == MSDS_ANCHOR or (mode == "auto" and schema_has_msds):
        return (MSDS_ANCHOR,)
    return (ADMIN_DESCRIPTION,)


def read_anchor_attributes(schema_has_msds: bool) -> tuple[str, ...]:
    """Which attributes an anchor is read from, in the order searched, whatever ``mapping.anchor`` says:
    msDS-ExternalDirectoryObjectId where the schema has it, and always adminDescription, where Connect v2 wrote
    its anchors only, so the groups it wrote are found and adopted. The one place this is decided."""
    return (MSDS_ANCHOR, ADMIN_DESCRIPTION) if schema_has_msds else (ADMIN_DESCRIPTION,)


def immutable_id_to_guid(immutable_id: str) -> str | None:
    """onPremisesImmutableId (base64 of objectGUID bytes, little-endian layout) -> canonical GUID string."""
    try:
        raw = base64.b64decode(immutable_id, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16:
        return None
    # str(uuid.UUID(bytes_le=raw)), written out: the first three fields little-endian, the rest as stored. Once
    # per synced user in every plan and every replica write, where building the UUID object cost 3x this.
    h = raw.hex()
    return f"{h[6:8]}{h[4:6]}{h[2:4]}{h[0:2]}-{h[10:12]}{h[8:10]}-{h[14:16]}{h[12:14]}-{h[16:20]}-{h[20:]}"


def group_source(group: CloudGroup) -> dict[str, Any]:
    """The attribute namespace expressions see, with Graph's names (objectId = id as in Cloud Sync)."""
    src: dict[str, Any] = dict(group.attributes)
    src.update(
        objectId=group.id,
        id=group.id,
        displayName=group.display_name,
        description=group.description,
        mailNickname=group.mail_nickname,
        mailEnabled=group.mail_enabled,
        securityEnabled=group.security_enabled,
        groupTypes=list(group.group_types),
        membershipRule=group.membership_rule,
        mail=group.mail,
        proxyAddresses=list(group.proxy_addresses),
        visibility=group.visibility,
    )
    return src


@dataclass(frozen=True)
class Mapper:
    """Compiled mapping settings; build once per run, map many groups. Knows nothing of AD's contents."""

    mapping: MappingSettings
    target_ou: str
    base_dn: str

    @cached_property
    def _exprs(self) -> dict[str, Expression]:
        m = self.mapping
        exprs = {
            "cn": compile_expression(m.cn),
            "description": compile_expression(m.description),
            "displayName": compile_expression(m.display_name),
        }
        if m.target_ou:
            exprs["__ou"] = compile_expression(m.target_ou)
        if m.sam_account_name:
            exprs["__sam"] = compile_expression(m.sam_account_name)
        if m.group_scope not in GROUP_SCOPES:
            exprs["__scope"] = compile_expression(m.group_scope)
        for attr, text in m.attributes.items():
            exprs[attr] = compile_expression(text)
        for name, key in _NAMING_KEYS.items():
            if name in exprs and exprs[name].redacted:
                raise ConfigError(
                    "Redact() cannot hide this value: it names the group (its DN, account name or type), "
                    "which every plan and log shows. Use Redact() in description, display_name or "
                    "mapping.attributes",
                    key=key,
                )
        return exprs

    @cached_property
    def redacted(self) -> frozenset[str]:
        """AD attributes whose mapping uses Redact(): their values are hidden in plans and logs."""
        return frozenset(name for name, expr in self._exprs.items() if expr.redacted)

    def group_scope(self, group: CloudGroup) -> str:
        if "__scope" in self._exprs:
            value = self._exprs["__scope"].evaluate(group_source(group)) or "universal"
            return value if value in GROUP_SCOPES else "universal"
        return self.mapping.group_scope

    def group_type(self, group: CloudGroup) -> int:
        kind = on_premises_group_type(group)
        if kind == UNIVERSAL_DISTRIBUTION:
            return GROUP_TYPE_UNIVERSAL  # 8: no security bit
        if kind is not None:  # Connect writes mail groups universal, whatever mapping.group_scope says
            return GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY
        return SCOPE_BITS[self.group_scope(group)] | GROUP_TYPE_SECURITY

    def sam_candidates(self, group: CloudGroup) -> list[str]:
        """Deterministic sAMAccountName choices, in order of preference; never random."""
        hexid = group.id.replace("-", "").lower()
        if "__sam" in self._exprs:
            base = clean_sam_account_name(self._exprs["__sam"].evaluate(group_source(group)) or "", SAM_MAX)
            if not base:
                base = "grp"
            out = [base]
            for n in (4, 8, 12, 32):
                out.append(clean_sam_account_name(base, SAM_MAX - n - 1) + "_" + hexid[-n:])
            return out
        prefix = clean_sam_account_name(group.display_name, 7) or "grp"
        return [prefix + "_" + hexid[-12:], "g_" + hexid[-18:], "g" + hexid[:19]]

    def intent(self, group: CloudGroup) -> Intent:
        """Everything about the desired AD group of ``group`` that needs no directory fact."""
        src = Source(group_source(group))  # one case-folded index per group, not one per expression
        # Control characters are removed from the CN as from the sAMAccountName: a NUL from a cloud name was
        # stored in AD (escaped as \00 in the DN), and nobody can type or read such a name.
        cn = without_controls(self._exprs["cn"].evaluate(src) or "")
        parent = self.target_ou
        error: str | None = None
        if "__ou" in self._exprs:
            parent = self._exprs["__ou"].evaluate(src) or self.target_ou
            if not is_within(parent, self.base_dn):
                error = f"mapped target OU {parent!r} is outside base_dn; fix mapping.target_ou"
                parent = self.target_ou
        if not cn.strip():
            error = "mapped cn is empty; fix mapping.cn"
        elif len(cn) > CN_MAX:
            error = f"mapped cn is {len(cn)} characters; AD allows {CN_MAX}; fix mapping.cn"
        attrs: dict[str, AttributeValue] = {}
        for name, expr in self._exprs.items():
            if name != "cn" and not name.startswith("__"):
                value = expr.evaluate(src)
                if expr.ignores_empty and value in (None, ""):
                    # IgnoreFlowIfNullOrEmpty: Microsoft drops the attribute from the flow, so the planner
                    # must not see it at all and AD keeps whatever it holds (None would clear it).
                    continue
                attrs[name] = value if value != "" else None
        # Mapped attributes win over the built-in mail attributes (an administrator's mapping is deliberate).
        kind = on_premises_group_type(group)
        attrs = {**mail_attributes(group, kind, self.mapping.secondary_smtp_addresses), **attrs}
        return Intent(
            key=group.id,
            anchor=group.anchor,
            name=group.display_name,
            cn=cn,
            parent_dn=parent,
            group_type=self.group_type(group),
            attributes=attrs,
            sam_candidates=tuple(self.sam_candidates(group)),
            sam_mapped=self.mapping.sam_account_name is not None,
            members=tuple(sorted(group.members, key=MEMBER_ORDER)),
            error=error,
            redacted=self.redacted,
        )


def user_source(user: CloudUser) -> dict[str, Any]:
    """The attribute namespace user expressions see, with Graph's v1.0 user property names (objectId = id)."""
    return {**user.graph_properties(), "objectId": user.id}


@dataclass(frozen=True)
class UserMapper:
    """Compiled ``[users.attributes]``; build once per plan, map many users. Maps attributes only: a user's
    account keeps its names and place (cn, sAMAccountName, UPN, OU), as ``keep_adopted_names`` keeps a taken-over
    group's, and never gets a password."""

    attributes: Mapping[str, str]

    @cached_property
    def _exprs(self) -> dict[str, Expression]:
        return {attr: compile_expression(text) for attr, text in self.attributes.items()}

    @cached_property
    def redacted(self) -> frozenset[str]:
        return frozenset(name for name, expr in self._exprs.items() if expr.redacted)

    def intent(self, user: CloudUser, sid: str) -> UserIntent:
        """The SOA user ``user`` as an intent, its original account to be found by ``sid`` (upper-cased)."""
        return UserIntent(
            key=user.id,
            anchor=user.anchor,
            name=user.display_name or user.user_principal_name or user.id,
            sid=sid,
            attributes=self._attributes(user),
            redacted=self.redacted,
        )

    def member_intent(self, user: CloudUser, target_ou: str) -> UserIntent:
        """A cloud-only member as an intent: the account writeback creates for it (or updates, found by its
        anchor), named by Cloud Sync's default user mappings (:func:`user_cn`, :func:`user_sam_candidates`,
        :func:`upn_prefix`) in ``target_ou``."""
        return UserIntent(
            key=user.id,
            anchor=user.anchor,
            name=user.display_name or user.user_principal_name or user.id,
            sid="",
            attributes=self._attributes(user),
            redacted=self.redacted,
            create=True,
            cn=user_cn(user),
            parent_dn=target_ou,
            sam_candidates=tuple(user_sam_candidates(user)),
            upn_prefix=upn_prefix(user),
            enabled=user.account_enabled is not False,
        )

    def _attributes(self, user: CloudUser) -> dict[str, AttributeValue]:
        src = Source(user_source(user))  # one case-folded index per user, not one per expression
        attrs: dict[str, AttributeValue] = {}
        for name, expr in self._exprs.items():
            value = expr.evaluate(src)
            if expr.ignores_empty and value in (None, ""):
                continue  # IgnoreFlowIfNullOrEmpty: AD keeps what it holds (see Mapper.intent)
            attrs[name] = value if value != "" else None
        return attrs


USER_SAM_MAX = 20  # a user's sAMAccountName: at most 20 characters, unique in the domain


def upn_prefix(user: CloudUser) -> str:
    """``Item(Split([userPrincipalName],"@"),1)``, control characters and whitespace removed (an empty
    prefix: the object id)."""
    prefix = (user.user_principal_name or "").split("@", 1)[0]
    return re.sub(r"\s", "", without_controls(prefix)) or user.id


def user_cn(user: CloudUser) -> str:
    """Cloud Sync's CN: ``Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))``, control
    characters removed (as for groups). At most 64 characters, and unique per user through the id."""
    name = without_controls(user.display_name or "").strip()[:51].strip()
    return f"{name or 'user'}_{user.id[24:36]}"


def user_sam_candidates(user: CloudUser) -> list[str]:
    """sAMAccountName choices, best first: Cloud Sync's ``Left(Item(Split([userPrincipalName],"@"),1),15)``,
    then that with a digit (2..9), then with the object id's end (unique per user; also the UPN prefix when
    the user's own is taken), each <= 20 characters; cleaned of the characters AD refuses. Few on purpose:
    each one is looked up in AD. The first free one is assigned (:func:`assign_sam_account_names`)."""
    base = clean_sam_account_name(upn_prefix(user), 15) or "user"
    hexid = user.id.replace("-", "").lower()
    out = [base, *(f"{base}{n}" for n in range(2, 10)), f"{base[:11]}_{hexid[-8:]}"]
    return [c for c in dict.fromkeys(out) if len(c) <= USER_SAM_MAX]


def dynamic_sam_candidates(group_id: str, name: str) -> list[str]:
    """sAMAccountName choices for an on-prem dynamic group: its name, then the name with a digest."""
    digest = hashlib.sha256(group_id.encode()).hexdigest()
    base = clean_sam_account_name(name, 20) or "dyn"
    return [
        base,
        clean_sam_account_name(name, 15) + "_" + digest[:4],
        clean_sam_account_name(name, 11) + "_" + digest[:8],
        "dyn_" + digest[:16],
    ]


# Mapped values that name the group: Redact() cannot hide them (DNs and account names are in every plan and log).
_NAMING_KEYS = {
    "cn": "mapping.cn",
    "__ou": "mapping.target_ou",
    "__sam": "mapping.sam_account_name",
    "__scope": "mapping.group_scope",
}


def nesting_allowed(parent_type: int, child_type: int) -> bool:
    """AD's group nesting rules (same domain): universal holds universal and global; global holds global only;
    domain local holds anything."""
    if parent_type & GROUP_TYPE_DOMAIN_LOCAL:
        return True
    if parent_type & GROUP_TYPE_UNIVERSAL:
        return not child_type & GROUP_TYPE_DOMAIN_LOCAL
    return bool(child_type & GROUP_TYPE_GLOBAL)


def clean_sam_account_name(value: str, limit: int) -> str:
    cleaned = _SAM_INVALID.sub("", value or "")[:limit]
    return cleaned.rstrip(".")


def assign_sam_account_names(
    candidates: Mapping[str, list[str]], existing: Mapping[str, str], taken: Iterable[str]
) -> dict[str, str]:
    """Pick one unique sAMAccountName per group, predictably.

    ``candidates``: cloud id -> names in preference order; ``existing``: cloud id -> the name its AD group
    already has (kept: renaming an account name breaks scripts); ``taken``: lower-cased names held by objects
    writeback does not manage. Groups are processed in id order so the result never depends on input order.
    """
    used = {t.lower() for t in taken} | {v.lower() for v in existing.values()}
    out: dict[str, str] = dict(existing)
    for cid in sorted(candidates):
        if cid in out:
            continue
        choice = next((c for c in candidates[cid] if c.lower() not in used), None)
        if choice is None:  # every candidate taken: the id plus a counter, still deterministic
            stem = ("g" + cid.replace("-", "").replace(":", ""))[:17]
            choice = next(f"{stem}{n:03d}" for n in range(1000) if f"{stem}{n:03d}".lower() not in used)
        used.add(choice.lower())
        out[cid] = choice
    return out
