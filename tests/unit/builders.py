"""One home for building the pure pipeline's inputs in unit tests: settings, intents and directory facts.

``desire`` runs exactly what the engine runs between its reads — sources -> intents -> desired state — with
the directory facts given as values, so the rules are tested without any fake directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from writeback.config import MappingSettings, MemberSettings, Settings, parse_settings
from writeback.core.desired import DesiredState, DirectoryFacts, cloud_intents, desired_state
from writeback.core.dn import normalize_dn
from writeback.core.mapping import MSDS_ANCHOR
from writeback.core.model import CloudGroup, CloudSnapshot, CloudUser, DirectoryAccount, DirectoryGroup
from writeback.core.ports import ResolvedAccounts

BASE = "DC=corp,DC=test"
OU = f"OU=Writeback,{BASE}"
DOC = {
    "source": {"tenant_id": "t", "client_id": "c", "client_secret_env": "X"},
    "target": {
        "ldap_urls": ["ldaps://dc"],
        "bind_dn": "x",
        "bind_password_env": "Y",
        "base_dn": BASE,
        "target_ou": OU,
    },
}


def settings(*, mapping: MappingSettings | None = None, **tables: Any) -> Settings:
    """Valid settings for the test domain; ``tables`` are TOML tables (e.g. safety={...}) or, for
    ``members``, a ready :class:`MemberSettings`; ``mapping`` a ready :class:`MappingSettings`."""
    members = tables.pop("members", None)
    if isinstance(members, dict):
        tables["members"] = members
        members = None
    s = parse_settings({**DOC, **tables}, "test.toml")
    if mapping is not None:
        s = dataclasses.replace(s, mapping=mapping)
    if isinstance(members, MemberSettings):
        s = dataclasses.replace(s, members=members)
    return s


def resolved(accounts: Iterable[DirectoryAccount]) -> ResolvedAccounts:
    accounts = list(accounts)
    return ResolvedAccounts(
        by_sid={a.object_sid.upper(): a for a in accounts if a.object_sid},
        by_guid={a.object_guid.lower(): a for a in accounts},
    )


def desire(
    groups: Iterable[CloudGroup],
    *,
    users: Mapping[str, CloudUser] | None = None,
    accounts: Iterable[DirectoryAccount] = (),
    managed: Iterable[DirectoryGroup] = (),
    existing: Collection[str] = (),
    taken: Mapping[str, str] | None = None,
    config: Settings | None = None,
    only: Collection[str] | None = None,
    by_sid: Iterable[DirectoryAccount] = (),
    originals: Iterable[DirectoryGroup] = (),
) -> DesiredState:
    """The desired state of ``groups`` given these directory facts (``existing``: DNs some object holds;
    ``by_sid``: groups found by SID anywhere; ``originals``: those of the domain, read as groups)."""
    config = config or settings()
    snapshot = CloudSnapshot(users=dict(users or {}), groups={g.id: g for g in groups})
    facts = DirectoryFacts(
        anchor_attributes=(MSDS_ANCHOR,),
        accounts=resolved(accounts),
        managed=tuple(managed),
        taken_names={k.lower(): v for k, v in (taken or {}).items()},
        existing_dns=frozenset(normalize_dn(d) for d in existing),
        groups_by_sid={a.object_sid.upper(): a for a in by_sid if a.object_sid},
        originals={g.object_sid.upper(): g for g in originals if g.object_sid},
    )
    return desired_state(cloud_intents(snapshot, config, only), facts, config)


def synced_people(n: int) -> tuple[dict[str, CloudUser], list[DirectoryAccount]]:
    """``n`` synced cloud users ``u0``… and their AD accounts ``CN=user0,OU=Staff``…, matched by SID."""
    users = {
        f"u{i}": CloudUser(
            f"u{i}", on_premises_sync_enabled=True, on_premises_security_identifier=f"S-1-5-21-9-{i}"
        )
        for i in range(n)
    }
    accounts = [
        DirectoryAccount(
            f"CN=user{i},OU=Staff,{BASE}", f"00000000-0000-0000-0000-{i:012d}", f"S-1-5-21-9-{i}"
        )
        for i in range(n)
    ]
    return users, accounts
