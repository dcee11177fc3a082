"""The sandbox's cloud side: the sample scenario plus a synced twin of every seeded AD account (pure).

Synced users are mirrored the way Entra Connect / Cloud Sync mirror them: the cloud object carries the
on-premises identifiers (SID, immutable id = objectGUID in little-endian byte order, base64), so the engine
can find each member's AD twin exactly as it would in a real hybrid tenant.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from writeback.errors import SandboxError
from writeback.testbed.sandbox.layout import DNS_DOMAIN, NETBIOS_DOMAIN, ONPREM_GROUPS_OU, STAFF_OU
from writeback.testbed.sandbox.people import scenario_people
from writeback.testbed.sandbox.secretfiles import write_private
from writeback.testbed.sandbox.seed import Account

# Fixed namespace: the cloud id of a synced object is uuid5(namespace, its objectGUID), so re-creating the
# tenant file for the same directory always yields the same ids.
SYNCED_ID_NAMESPACE = uuid.UUID("6f1c3b52-2d0e-4e9a-b8a7-5d3c1e0f9a41")
SAM_PREFIX = "sam:"
UAC_ACCOUNTDISABLE = 0x2


@dataclass(frozen=True)
class Scenario:
    """The parsed sample tenant (see examples/sample-tenant.yaml for the format and its placeholders)."""

    document: Mapping[str, Any]

    @property
    def tenant_id(self) -> str:
        return str(self.document["tenant_id"])

    @property
    def client_id(self) -> str:
        return str(self.document["apps"][0]["client_id"])

    @property
    def directory_users(self) -> list[Mapping[str, Any]]:
        return list(self.document.get("directory", {}).get("users", []))

    @property
    def directory_groups(self) -> list[Mapping[str, Any]]:
        return list(self.document.get("directory", {}).get("groups", []))


def load_scenario(path: Path | None = None) -> Scenario:
    """Read a scenario file; by default the sample shipped with writeback (examples/sample-tenant.yaml)."""
    try:
        if path is None:
            text = (
                resources.files("writeback.testbed.sandbox").joinpath("sample-tenant.yaml").read_text("utf-8")
            )
        else:
            text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise SandboxError(f"cannot read the sample tenant {path or 'sample-tenant.yaml'}: {exc}") from exc
    if not isinstance(document, dict) or "tenant_id" not in document or not document.get("apps"):
        raise SandboxError("the sample tenant needs tenant_id and at least one app")
    return Scenario(document)


def users_explained(users: int, scenario: Scenario | None = None) -> list[str]:
    """Why OU=Staff holds more users than ``--users`` asked for: the sample tenant's own people come first."""
    scenario = scenario or load_scenario()
    own = len(scenario.directory_users)
    cloud_only = sum(1 for u in scenario.document.get("users") or [] if not is_synced_twin(u))
    return [
        f"{own + users} in OU=Staff = the sample tenant's own {own} (Anna Jansen, ...) + {users} generated "
        f"(--users {users}),",
        f"all synced to the tenant (which also has {cloud_only} cloud-only users, never in AD; "
        f"{len(soa_user_sams(scenario))} of the synced since converted to cloud source of authority)",
    ]


def synced_id(object_guid: uuid.UUID) -> str:
    return str(uuid.uuid5(SYNCED_ID_NAMESPACE, str(object_guid)))


def immutable_id(object_guid: uuid.UUID) -> str:
    """Entra's default sourceAnchor: base64 of the objectGUID in its little-endian (AD) byte layout."""
    return base64.b64encode(object_guid.bytes_le).decode("ascii")


def synced_user(account: Account) -> dict[str, Any]:
    """The Graph user a sync engine would create for this AD user."""
    a = account.first
    uac = int(a("userAccountControl") or "512")
    user: dict[str, Any] = {
        "id": synced_id(account.object_guid),
        "displayName": a("displayName") or account.sam,
        "givenName": a("givenName"),
        "surname": a("sn"),
        "userPrincipalName": a("userPrincipalName") or f"{account.sam}@{DNS_DOMAIN}",
        "mail": a("mail"),
        "department": a("department"),
        "jobTitle": a("title"),
        "employeeId": a("employeeID"),
        "accountEnabled": not uac & UAC_ACCOUNTDISABLE,
        "userType": "Member",
        "onPremisesSyncEnabled": True,
        "onPremisesSecurityIdentifier": account.sid,
        "onPremisesImmutableId": immutable_id(account.object_guid),
        "onPremisesDistinguishedName": account.dn,
        "onPremisesSamAccountName": account.sam,
        "onPremisesDomainName": DNS_DOMAIN,
        "onPremisesUserPrincipalName": a("userPrincipalName"),
    }
    return {k: v for k, v in user.items() if v is not None}


def build_tenant(scenario: Scenario, accounts: Iterable[Account], client_secret: str) -> dict[str, Any]:
    """The emulator's tenant document: the scenario's cloud objects, placeholders resolved, plus every
    seeded AD user as a synced cloud user. ``client_secret`` replaces the sample's placeholder secret."""
    doc = copy.deepcopy(dict(scenario.document))
    by_sam = {a.sam.lower(): a for a in accounts}
    by_dn = {a.dn.lower(): a for a in by_sam.values()}

    def resolve(ref: object, where: str) -> str:
        text = str(ref)
        if not text.startswith(SAM_PREFIX):
            return text
        account = by_sam.get(text[len(SAM_PREFIX) :].lower())
        if account is None:
            raise SandboxError(f"{where}: no AD account with sAMAccountName {text[len(SAM_PREFIX) :]!r}")
        return synced_id(account.object_guid)

    twins = {str(u["onPremisesSamAccountName"]).lower(): u for u in doc.get("users", []) if is_synced_twin(u)}
    users = []
    for account in by_sam.values():
        if account.kind != "user":
            continue
        user = synced_user(account)
        # A scenario entry naming this AD user: its cloud twin's own state (an SOA conversion, cloud edits).
        user.update({k: v for k, v in twins.pop(account.sam.lower(), {}).items()})
        users.append(user)
    groups = []
    for group in doc.get("groups", []):
        name = group.get("displayName", group.get("id", "?"))
        if (
            (group.get("onPremisesSyncEnabled") or is_soa_twin(group))
            and group.get("onPremisesSamAccountName")
            and not group.get("id")
        ):
            own = group.get("members") if is_soa_twin(group) else None
            group = _synced_group(group, by_sam, by_dn)
            if own is not None:  # converted to cloud source of authority: the cloud's members
                group["members"] = [resolve(m, f"group {name}") for m in own]
        else:
            group["members"] = [resolve(m, f"group {name}") for m in group.get("members", [])]
        groups.append(group)
    if twins:  # after the groups, whose placeholders name the missing accounts more usefully
        raise SandboxError(f"users {sorted(twins)}: no AD account with that sAMAccountName in OU=Staff")
    apps = [dict(app) for app in doc.get("apps", [])]
    apps[0]["client_secret"] = client_secret
    tenant: dict[str, Any] = {
        "tenant_id": doc["tenant_id"],
        "apps": apps,
        "users": users + [u for u in doc.get("users", []) if not is_synced_twin(u)],
        "groups": groups,
    }
    for key in ("devices", "servicePrincipals", "orgContacts", "groupSettings", "defaultDomain"):
        if doc.get(key):
            tenant[key] = doc[key]
    return tenant


def is_synced_twin(user: Mapping[str, Any]) -> bool:
    """A scenario user without an id but with onPremisesSamAccountName: the cloud twin of that AD user, whose
    listed properties override what sync would give it (an SOA conversion, edits made in the cloud since)."""
    return not user.get("id") and bool(user.get("onPremisesSamAccountName"))


def soa_user_sams(scenario: Scenario) -> list[str]:
    """sAMAccountNames of the AD users whose cloud twins the scenario converts to cloud source of authority."""
    return [
        str(u["onPremisesSamAccountName"])
        for u in scenario.document.get("users", [])
        if is_synced_twin(u) and is_soa_twin(u)
    ]


def is_soa_twin(obj: Mapping[str, Any]) -> bool:
    """A synced group or user converted to cloud source of authority (beta onPremisesSyncBehavior.isCloudManaged)."""
    behavior = obj.get("onPremisesSyncBehavior")
    return isinstance(behavior, Mapping) and behavior.get("isCloudManaged") is True


def soa_group_sams(scenario: Scenario) -> list[str]:
    """sAMAccountNames of the AD groups whose cloud twins the scenario converts to cloud source of authority."""
    return [
        str(g["onPremisesSamAccountName"])
        for g in scenario.document.get("groups", [])
        if is_soa_twin(g) and g.get("onPremisesSamAccountName")
    ]


def _synced_group(
    group: dict[str, Any], by_sam: Mapping[str, Account], by_dn: Mapping[str, Account]
) -> dict[str, Any]:
    """The cloud twin of an AD group synced to Entra ID: its identifiers and members come from AD."""
    sam = str(group["onPremisesSamAccountName"])
    account = by_sam.get(sam.lower())
    if account is None or account.kind != "group":
        raise SandboxError(f"synced group {sam!r}: no such group in OU=Groups of the sandbox DC")
    members = [by_dn[dn.lower()] for dn in account.attributes.get("member", []) if dn.lower() in by_dn]
    return {
        "id": synced_id(account.object_guid),
        **group,
        "onPremisesSecurityIdentifier": account.sid,
        "onPremisesDomainName": DNS_DOMAIN,
        "onPremisesNetBiosName": NETBIOS_DOMAIN,
        "members": sorted(synced_id(m.object_guid) for m in members),
    }


def write_tenant(path: Path, tenant: Mapping[str, Any]) -> None:
    """Write the tenant file, YAML or JSON by suffix (mode 0600: it holds the app's client secret)."""
    if path.suffix == ".json":
        write_private(path, json.dumps(dict(tenant), ensure_ascii=False, indent=1) + "\n")
        return
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: several times faster
    body = yaml.dump(dict(tenant), Dumper=dumper, sort_keys=False, allow_unicode=True, width=120)
    write_private(
        path, "# Written by `writeback sandbox up` from the sample tenant and the sandbox DC.\n" + body
    )


def is_scenario(document: Mapping[str, Any]) -> bool:
    """True for a sandbox scenario (examples/sample-tenant.yaml: it has a ``directory:`` side or ``sam:``
    placeholders), False for a plain emulator tenant file."""
    if "directory" in document:
        return True
    return any(
        str(member).startswith(SAM_PREFIX)
        for group in document.get("groups") or []
        for member in group.get("members") or []
    )


def generated_accounts(scenario: Scenario, *, seed: int | None = None) -> list[Account]:
    """The scenario's AD side as a DC would report it, made up without a DC: each user and group gets a
    random objectGUID and a SID under one random domain SID (S-1-5-21-x-y-z, RIDs from 1103, where a fresh
    domain's first accounts start). For ``writeback emulator serve`` on a scenario, where no DC runs."""
    rng = random.Random(seed)
    domain_sid = "S-1-5-21-" + "-".join(str(rng.randrange(1 << 28, 1 << 32)) for _ in range(3))
    people = scenario_people(scenario.directory_users)
    accounts: list[Account] = []
    dn_by_sam: dict[str, str] = {}
    rid = 1103
    for person in people:
        attributes = {
            name: [v.decode("utf-8") for v in values]
            for name, values in person.ldap_attributes()
            if name not in ("objectClass", "unicodePwd")
        }
        dn = person.dn(STAFF_OU)
        dn_by_sam[person.sam.lower()] = dn
        accounts.append(
            Account(dn, uuid.UUID(int=rng.getrandbits(128), version=4), f"{domain_sid}-{rid}", person.sam,
                    "user", attributes)
        )  # fmt: skip
        rid += 1
    for group in scenario.directory_groups:
        sam = str(group["sam"])
        members = [dn_by_sam[str(m).lower()] for m in group.get("members", []) if str(m).lower() in dn_by_sam]
        attributes = {"member": members, "description": [str(group.get("description", ""))]}
        accounts.append(
            Account(f"CN={sam},{ONPREM_GROUPS_OU}", uuid.UUID(int=rng.getrandbits(128), version=4),
                    f"{domain_sid}-{rid}", sam, "group", attributes)
        )  # fmt: skip
        rid += 1
    return accounts
