"""Cloud group -> desired AD group: names, anchor, attributes, group type and resolved members. Pure.

Defaults follow Entra Cloud Sync's attribute mappings so writeback can take over groups Microsoft wrote:
CN ``Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))``, anchor ``Group_<objectId>`` in
msDS-ExternalDirectoryObjectId (adminDescription when the schema lacks it), universal security groupType.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from writeback.config import GROUP_SCOPES, MappingSettings
from writeback.core.dn import is_within
from writeback.core.expressions import Expression, compile_expression
from writeback.core.model import (
    GROUP_TYPE_DOMAIN_LOCAL,
    GROUP_TYPE_GLOBAL,
    GROUP_TYPE_SECURITY,
    GROUP_TYPE_UNIVERSAL,
    CloudGroup,
    Intent,
)
from writeback.errors import ConfigError

MSDS_ANCHOR = "msDS-ExternalDirectoryObjectId"
ADMIN_DESCRIPTION = "adminDescription"
CN_MAX = 64  # AD's rangeUpper for cn (Samba accepts more; AD does not)
SAM_MAX = 64
DEFAULT_SAM_MAX = 20  # pre-Windows 2000 compatible length
_SAM_INVALID = re.compile(r'["/\\\[\]:;|=,+*?<>@\s]')
SCOPE_BITS = {
    "universal": GROUP_TYPE_UNIVERSAL,
    "global": GROUP_TYPE_GLOBAL,
    "domainLocal": GROUP_TYPE_DOMAIN_LOCAL,
}


def anchor_attributes(mode: str, schema_has_msds: bool) -> tuple[str, ...]:
    """Which attributes carry ``Group_<objectId>``; the first is the one searched for first."""
    if mode == "both":
        return (MSDS_ANCHOR, ADMIN_DESCRIPTION) if schema_has_msds else (ADMIN_DESCRIPTION,)
    if mode == MSDS_ANCHOR or (mode == "auto" and schema_has_msds):
        return (MSDS_ANCHOR,)
    return (ADMIN_DESCRIPTION,)


def immutable_id_to_guid(immutable_id: str) -> str | None:
    """onPremisesImmutableId (base64 of objectGUID bytes, little-endian layout) -> canonical GUID string."""
    try:
        raw = base64.b64decode(immutable_id, validate=True)
    except (binascii.Error, ValueError):
        return None
    return str(uuid.UUID(bytes_le=raw)) if len(raw) == 16 else None


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
        src = group_source(group)
        cn = self._exprs["cn"].evaluate(src) or ""
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
        attrs: dict[str, str | None] = {}
        for name, expr in self._exprs.items():
            if name != "cn" and not name.startswith("__"):
                value = expr.evaluate(src)
                if expr.ignores_empty and value in (None, ""):
                    # IgnoreFlowIfNullOrEmpty: Microsoft drops the attribute from the flow, so the planner
                    # must not see it at all and AD keeps whatever it holds (None would clear it).
                    continue
                attrs[name] = value if value != "" else None
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
            members=tuple(sorted(group.members)),
            error=error,
            redacted=self.redacted,
        )


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
