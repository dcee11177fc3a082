"""`writeback config check`: connect to both ends and report what is wrong or missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from writeback.config import Settings
from writeback.core.mapping import MSDS_ANCHOR, anchor_attributes, read_anchor_attributes
from writeback.core.rights import MEMBER, rights_message
from writeback.errors import WritebackError


class _Skip(Exception):
    pass


if TYPE_CHECKING:
    from writeback.adapters.directory import LdapDirectory


def check_config(settings: Settings, say: Callable[[str], None]) -> list[str]:
    from writeback.app import wiring

    problems: list[str] = []
    say(f"Config {settings.path}: loaded")
    try:
        if settings.source is None:
            raise _Skip
        client, _source = wiring.build_graph(settings)
        try:
            client.check()
            say(f"Graph {settings.source.graph_url}: token obtained, groups readable")
        finally:
            client.close()
    except _Skip:
        say('Graph: not configured (scope.mode = "none": on-prem dynamic groups only)')
    except WritebackError as exc:
        problems.append(f"Graph: {exc}")
        say(f"Graph: FAILED: {exc}")
    try:
        directory = wiring.build_directory(settings)
        try:
            directory.check_tls_and_bind()
            if settings.target.auth == "kerberos":
                problems += _kerberos_bound(settings, directory, say)
            else:
                say(
                    f"AD {', '.join(settings.target.ldap_urls)}: TLS and bind OK as {settings.target.bind_dn}"
                )
            if directory.has_attribute(MSDS_ANCHOR):
                say(f"AD schema: {MSDS_ANCHOR} present (used as the anchor)")
            elif settings.mapping.anchor == MSDS_ANCHOR:
                problems.append(
                    f"AD schema lacks {MSDS_ANCHOR} but mapping.anchor requires it; extend the schema "
                    '(Windows Server 2016 schema) or set mapping.anchor = "auto"'
                )
            else:
                say(f"AD schema: {MSDS_ANCHOR} missing; adminDescription will carry the anchor")
            if not directory.existing_dns([settings.target.target_ou]):
                problems.append(f"target OU {settings.target.target_ou} does not exist; create it")
            else:
                for p in directory.check_write_access(settings.target.target_ou):
                    problems.append(f"AD permissions: {p}")
                say(f"AD target OU {settings.target.target_ou}: checked write access")
            problems += _taken_over_rights(settings, directory, say)
            problems += _original_rights(settings, directory, say)
            _foreign_user_anchors(settings, directory, say)
            if settings.target.gc_urls:
                directory.resolve_accounts(["S-1-5-21-0-0-0-500"], [])
                say(f"Global Catalog {' or '.join(settings.target.gc_urls)}: reachable")
        finally:
            directory.close()
    except WritebackError as exc:
        problems.append(f"AD: {exc}")
        say(f"AD: FAILED: {exc}")
    return problems


def _kerberos_bound(settings: Settings, directory: LdapDirectory, say: Callable[[str], None]) -> list[str]:
    """Say how the Kerberos bind is protected, and where the configuration depends on the DC's hardening.

    The failures themselves (KDC unreachable, clock skew, unknown principal, unreadable keytab or wrong key
    version, missing SPN, sealing refused, channel binding enforced) come as the bind's error, diagnosed by
    adapters/directory/kerberos.py, and are reported by check_config like any AD failure."""
    t = settings.target
    source = f"keytab {t.keytab}" if t.keytab else "the host's credential cache (KRB5CCNAME)"
    say(
        f"AD {', '.join(t.ldap_urls)}: Kerberos bind OK as {t.principal or 'the cached principal'} ({source}); "
        f"connection {directory.protection}; no AD password in the configuration"
    )
    say(f"AD account of the principal: {directory.account_dn()}")
    if any(url.lower().startswith("ldaps://") for url in (*t.ldap_urls, *t.gc_urls)):
        # Not a problem yet (this DC took the bind), but the one DC setting under which it cannot work.
        say(
            "NOTE: a Kerberos bind over ldaps:// sends no channel binding token (python-ldap has no option for "
            "it, and Cyrus SASL 2.1.28 leaves GSSAPI channel bindings off): a DC with "
            "LdapEnforceChannelBinding = 2 refuses it. ldap:// (port 389, signed and sealed by Kerberos) works "
            "under every LDAP signing and channel binding setting (docs/hardened-dc.md)"
        )
    return []


def _taken_over_rights(settings: Settings, directory: LdapDirectory, say: Callable[[str], None]) -> list[str]:
    """Managed groups outside the target OU (SOA originals and Connect groups taken over where they are) that
    the service account may not write: the plan holds their changes; the same report and dsacls lines here."""
    has_msds = directory.has_attribute(MSDS_ANCHOR)
    written = anchor_attributes(settings.mapping.anchor, has_msds)
    needed = (MEMBER, *written, "description", "displayName")
    delegated = (settings.target.target_ou, *(g.ou for g in settings.dynamic_groups))
    found = directory.unwritable_managed_groups(read_anchor_attributes(has_msds), needed, delegated)
    say(f"AD groups taken over outside the target OU: {len(found)} without the rights writeback needs")
    return [f"AD permissions: {rights_message(dn, missing, missing)}" for dn, missing in found]


def _original_rights(settings: Settings, directory: LdapDirectory, say: Callable[[str], None]) -> list[str]:
    """SOA-converted groups in scope whose original AD group writeback has not stamped yet (no anchor search
    finds them): their originals, found by SID as a plan finds them, that the service account may not write.
    Read from the state's cloud replica, so only after a first `writeback plan` has synced it."""
    from writeback.app import wiring
    from writeback.core.desired import cloud_intents

    if not settings.scope.cloud_enabled:
        return []
    store = wiring.build_store(settings)
    try:
        if not store.has_synced():
            say(
                "SOA-converted groups' originals: not checked yet (no cloud replica: run `writeback plan` first)"
            )
            return []
        intents = cloud_intents(store.snapshot(member_groups=()), settings)
    finally:
        store.close()
    sids = {i.original_sid for i in intents.groups.values() if i.original_sid}
    originals = directory.resolve_groups_by_sid(sids) if sids else {}
    has_msds = directory.has_attribute(MSDS_ANCHOR)
    needed = (MEMBER, *anchor_attributes(settings.mapping.anchor, has_msds), "description", "displayName")
    found = directory.attributes_not_writable([a.dn for a in originals.values()], needed)
    say(
        f"SOA-converted groups' originals in AD: {len(originals)} found, {len(found)} without the rights "
        "writeback needs"
    )
    return [f"AD permissions: {rights_message(dn, missing, missing)}" for dn, missing in found]


def _foreign_user_anchors(settings: Settings, directory: LdapDirectory, say: Callable[[str], None]) -> None:
    """With ``[users]`` on, a warning (not a problem) when AD holds accounts anchored ``User_`` that writeback
    has never written: Cloud Sync's user provisioning (or another tool) may write the same domain, and two
    writers of one account undo each other's values. writeback's own are the users in the state's applied
    fingerprints."""
    from writeback.app import wiring

    if not settings.users.enabled or not directory.has_attribute(MSDS_ANCHOR):
        return
    anchored = directory.read_managed_users((MSDS_ANCHOR,))
    store = wiring.build_store(settings)
    try:
        ours = set(store.applied_fingerprints())
    finally:
        store.close()
    foreign = sorted(u.dn for u in anchored if u.cloud_id and u.cloud_id not in ours)
    if not foreign:
        say(f"AD accounts anchored User_: {len(anchored)}, every one written by this writeback")
        return
    shown = "; ".join(foreign[:5]) + (f"; and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    say(
        f"WARNING: AD accounts with a User_ anchor writeback never wrote: {len(foreign)} ({shown}). A Cloud "
        "Sync user provisioning job (or another tool) may write this domain: two writers of one account undo "
        "each other. Scope that job away from these accounts, or leave [users] off"
    )
