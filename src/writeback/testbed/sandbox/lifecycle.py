"""sandbox_up / sandbox_down / sandbox_status: the sandbox's public operations.

``sandbox_up`` brings each missing part up and leaves running parts alone, so it is safe to call again (after
a reboot, after ``down``, or when the emulator has been installed since). A lock file serialises concurrent
callers on the same directory (several test sessions may share one developer sandbox).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pwd
import shutil
import stat
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from writeback.errors import SandboxError
from writeback.testbed.sandbox import (
    configfile,
    console,
    emulator,
    kerberos,
    postgres,
    samba,
    schema,
    seed,
    serviceaccount,
    snapshot,
)
from writeback.testbed.sandbox.info import SandboxInfo, SandboxStatus, load_info, save_info
from writeback.testbed.sandbox.layout import (
    ADMIN_DN,
    BASE_DN,
    CLOUD_USERS_OU,
    DC_HOSTNAME,
    DNS_DOMAIN,
    GC_URL,
    LDAP_URL,
    LDAPS_URL,
    ONPREM_GROUPS_OU,
    STAFF_OU,
    WRITEBACK_OU,
    SandboxPaths,
)
from writeback.testbed.sandbox.ldapconn import connect_when_ready
from writeback.testbed.sandbox.people import Person, generated_people, scenario_people
from writeback.testbed.sandbox.secretfiles import (
    ensure_secret,
    new_client_secret,
    new_password,
    write_private,
)
from writeback.testbed.sandbox.tenant import (
    Scenario,
    build_tenant,
    load_scenario,
    soa_group_sams,
    soa_user_sams,
    write_tenant,
)
from writeback.testbed.tlsutil import ensure_server_cert

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


@contextlib.contextmanager
def _locked(paths: SandboxPaths) -> Iterator[None]:
    with open(paths.lock_file, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sandbox_up(
    directory: Path,
    users: int = 50,
    progress: Progress | None = None,
    *,
    postgres: bool = False,
    exchange_schema: bool = False,
    kerberos: bool = False,
) -> SandboxInfo:
    """Provision (once), start and describe a sandbox in ``directory`` with ``users`` generated users; with
    ``postgres``, also its PostgreSQL server (:mod:`writeback.testbed.sandbox.postgres`).

    Idempotent: parts already running are kept, a provisioned domain is reused. A big seeded directory
    (``users`` >= 2,000) is snapshotted to the cache and restored from it next time instead of re-seeded.
    ``exchange_schema`` extends the schema with Exchange's recipient attributes (also on a running sandbox;
    off by default, so the path without Exchange's schema is what a plain sandbox tests).
    Every sandbox runs a KDC and has the service account's keytab (sandbox.json: service_keytab,
    service_principal, krb5_conf); ``kerberos`` also writes DIR/writeback-kerberos.toml, a config that binds
    with that keytab (SASL GSSAPI, signed and sealed, port 389), and keeps it written on later runs.
    """
    if users < 0:
        raise SandboxError(f"the number of users must be 0 or more, not {users}")
    say = progress or _quiet
    paths = SandboxPaths(Path(directory).resolve())
    check_directory(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(paths):
        samba.ensure_installed()  # first: without Samba, saying what to install helps more than "need root"
        samba.require_root()
        marker = snapshot.read_marker(paths)
        if marker is not None and marker.get("users") != users:
            raise SandboxError(
                f"the sandbox in {paths.root} was seeded with {marker.get('users')} users, not {users}; "
                "use that number, or run `writeback sandbox down` and remove the directory to start afresh"
            )
        info = _already_up(paths)
        if info is not None:
            say(f"Sandbox in {paths.root} is already up")
            if exchange_schema:
                _extend_exchange(paths, say)
        else:
            scenario = load_scenario()
            accounts = _provision(paths, users, scenario, say) if marker is None else None
            if samba.running_pid(paths) is None:
                say("Starting Samba AD DC")
                samba.start(paths)
            if exchange_schema:
                _extend_exchange(paths, say)
            info = _finish(paths, users, scenario, say, accounts, fresh=marker is None)
        info = _kerberos_part(paths, info, kerberos, say)
        return _postgres_part(paths, info, postgres, say)


def _kerberos_part(paths: SandboxPaths, info: SandboxInfo, wanted: bool, say: Progress) -> SandboxInfo:
    """With ``wanted`` (or once wanted before: the file exists), write DIR/writeback-kerberos.toml."""
    if not (wanted or paths.kerberos_config_file.exists()) or info.service_keytab is None:
        return info
    configfile.write_kerberos(info, paths)
    if wanted:
        say(
            f"Kerberos config: {paths.kerberos_config_file} (binds with {info.service_keytab}; run writeback "
            f"with KRB5_CONFIG={info.krb5_conf})"
        )
    updated = dataclasses.replace(info, kerberos_config=paths.kerberos_config_file)
    if updated != info:
        save_info(paths, updated)
    return updated


def _delegate(conn: Any, paths: SandboxPaths, password: str, dn: str, sid: str, **what: Any) -> None:
    """serviceaccount.delegate on this sandbox's DC (``what``: its ``sddl`` or ``attributes``)."""
    serviceaccount.delegate(
        conn,
        smb_conf=paths.smb_conf,
        ldap_url=LDAP_URL,
        base_dn=BASE_DN,
        admin_password=password,
        ou_dn=dn,
        sid=sid,
        **what,
    )


def _postgres_part(paths: SandboxPaths, info: SandboxInfo, wanted: bool, say: Progress) -> SandboxInfo:
    """Start PostgreSQL when ``wanted``; in any case, sandbox.json says whether it runs and how to reach it,
    and while it runs the two HA configs on it are written (DIR/writeback-ha-a.toml, -b.toml)."""
    if wanted and postgres.running_pid(paths) is None:
        say("Starting PostgreSQL")
        postgres.start(paths)
    pid = postgres.running_pid(paths)
    ha_configs: tuple[str, ...] = ()
    if pid is not None:
        shared = configfile.SharedState(postgres.public_url(paths), postgres.password_file(paths))
        ha_configs = tuple(str(p) for p in configfile.write_ha(info, paths, shared))
    updated = dataclasses.replace(
        info,
        postgres_pid=pid,
        postgres_url=postgres.public_url(paths) if pid is not None else None,
        postgres_password_file=postgres.password_file(paths) if pid is not None else None,
        ha_configs=ha_configs,
    )
    if updated != info:
        save_info(paths, updated)
    return updated


def _extend_exchange(paths: SandboxPaths, say: Progress) -> None:
    password = paths.bind_password_file.read_text(encoding="utf-8").strip()
    conn = connect_when_ready(LDAPS_URL, paths.tls_dir / "ca.pem", ADMIN_DN, password)
    try:
        paths.exchange_schema_file.touch(mode=0o600)  # before: a reset after a failure here extends it again
        if not schema.has_exchange_schema(conn, BASE_DN):
            say("Extending the schema with Exchange's recipient attributes (msExchRecipientTypeDetails, ...)")
            schema.extend_exchange(conn, BASE_DN)
            sid = serviceaccount.existing_sid(conn, BASE_DN)
            if sid is not None:  # a sandbox delegated before: add Write of the new attributes
                _delegate(
                    conn,
                    paths,
                    password,
                    WRITEBACK_OU,
                    sid,
                    attributes=serviceaccount.EXCHANGE_WRITTEN_ATTRIBUTES,
                )
    finally:
        conn.unbind_s()


def _owner_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_directory(root: Path) -> None:
    """Refuse an existing sandbox directory that another user owns or that group or others can write.

    The sandbox keeps the Administrator password, private keys and the emulator's admin token there and
    runs Samba (as root) from files in it: anyone who may write the directory could swap those files.
    """
    try:
        info = os.stat(root)
    except FileNotFoundError:
        return  # created below, mode 0700
    if not stat.S_ISDIR(info.st_mode):
        raise SandboxError(
            f"the sandbox directory {root} exists and is not a directory; choose another --dir"
        )
    me = os.geteuid()
    if info.st_uid != me:
        raise SandboxError(
            f"refusing the sandbox directory {root}: it belongs to {_owner_name(info.st_uid)}, not to you "
            f"({_owner_name(me)}); the sandbox keeps secrets and runs Samba from it. Use a directory you "
            f"own (--dir or WRITEBACK_SANDBOX_DIR), or `chown {me} {root}` if it is yours to take"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(
            name
            for bit, name in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "other users"))
            if info.st_mode & bit
        )
        raise SandboxError(
            f"refusing the sandbox directory {root}: {who} can write it (mode {stat.S_IMODE(info.st_mode):04o})"
            f", so they could replace the secrets, keys and programs' files the sandbox keeps there. Run "
            f"`chmod go-w {root}` (0700 is best) or use another --dir"
        )


def _already_up(paths: SandboxPaths) -> SandboxInfo | None:
    """The current info when every part runs already, else None."""
    status = _status(paths)
    if not status.up or not paths.info_file.exists():
        return None
    try:
        info = load_info(paths.root)
    except SandboxError:
        return None  # written by an older version, or damaged: rebuild it
    if (info.samba_pid, info.emulator_pid) != (status.samba_pid, status.emulator_pid):
        return None  # restarted behind our back: rebuild the info
    if info.service_bind_dn is None or (info.emulator_pid is not None and not info.emulator_admin_token):
        return None  # made by a version without the service account or the admin token: complete it
    if not info.console_url or not info.console_token or not paths.console_tokens_file.exists():
        return None  # made by a version without the console: complete it
    if info.cloud_users_ou is None:
        return None  # made by a version without the cloud users' OU (issue 24): complete it
    if info.service_keytab is None or not Path(info.service_keytab).exists():
        return None  # made by a version without the KDC and keytab (issue 26): complete it
    return info


def _provision(
    paths: SandboxPaths, users: int, scenario: Scenario, say: Progress
) -> list[seed.Account] | None:
    """Create the domain from scratch (or from a snapshot) and seed it. Returns the seeded accounts as read
    back (None if they must be read from the DC). Leaves Samba running, except after a restore."""
    if samba.running_pid(paths) is not None:
        samba.stop(paths)  # a half-made domain from an interrupted run
    for leftover in (paths.samba_dir, paths.tls_dir, paths.secrets_dir):
        shutil.rmtree(leftover, ignore_errors=True)
    if snapshot.wanted(users) and snapshot.restore(paths, users):
        say(f"Restored the {users}-user directory from {snapshot.snapshot_file(users)}")
        return seed.load_accounts(paths.accounts_file)
    password = new_password()
    write_private(paths.bind_password_file, password)
    cert = ensure_server_cert(
        paths.tls_dir, DC_HOSTNAME, ("127.0.0.1", "localhost", DC_HOSTNAME, *kerberos.local_host_names())
    )
    say(f"Provisioning domain {DNS_DOMAIN.upper()} in {paths.samba_dir}")
    samba.provision(paths, password)
    samba.configure(paths, cert)
    say("Starting Samba AD DC")
    samba.start(paths)
    conn = connect_when_ready(LDAPS_URL, cert.ca_file, ADMIN_DN, password)
    try:
        say("Extending the schema with msDS-ExternalDirectoryObjectId")
        schema.extend(conn, BASE_DN)
        _seed(conn, users, scenario, say)
        accounts = seed.read_seeded(conn)
    finally:
        conn.unbind_s()
    seed.save_accounts(paths.accounts_file, accounts)
    snapshot.write_marker(paths, users)
    if snapshot.wanted(users):
        say(f"Saving a snapshot of the {users}-user directory")
        samba.stop(paths)
        target = snapshot.save(paths, users)
        say(f"Snapshot saved to {target}")
    return accounts


def _seed(conn: Any, users: int, scenario: Scenario, say: Progress) -> None:
    seed.add_all(conn, seed.ou_entries(BASE_DN), window=1)
    fixed = scenario_people(scenario.directory_users)
    people: list[Person] = [*fixed, *generated_people(users, fixed)]
    say(
        f"Creating {len(people)} users in {STAFF_OU}: the sample tenant's own {len(fixed)} and {users} generated "
        f"(--users {users})"
    )
    started = time.monotonic()

    def created(n: int) -> None:
        rate = n / max(time.monotonic() - started, 1e-6)
        say(f"  {n} of {len(people)} users created ({rate:.0f}/s so far)")

    seed.add_all(conn, ((p.dn(STAFF_OU), p.ldap_attributes()) for p in people), progress=created)
    say(f"Created {len(people)} users in {time.monotonic() - started:.1f} s")
    dn_by_sam = {p.sam.lower(): p.dn(STAFF_OU) for p in people}
    groups = []
    for group in scenario.directory_groups:
        missing = [m for m in group.get("members", []) if str(m).lower() not in dn_by_sam]
        if missing:
            raise SandboxError(f"on-premises group {group['sam']}: unknown members {missing}")
        groups.append(
            seed.group_entry(
                str(group["sam"]),
                str(group.get("displayName", group["sam"])),
                str(group.get("description", "")),
                (dn_by_sam[str(m).lower()] for m in group.get("members", [])),
            )
        )
    seed.add_all(conn, groups, window=1)


def _finish(
    paths: SandboxPaths,
    users: int,
    scenario: Scenario,
    say: Progress,
    accounts: list[seed.Account] | None,
    *,
    fresh: bool = False,
) -> SandboxInfo:
    """With Samba running: make sure of the schema, write the tenant, start the emulator, write the info.
    ``accounts`` are the seeded accounts when just seeded or restored; otherwise they are read from the DC.
    ``fresh``: the DC was just provisioned (or restored from the cache), so once its service account is
    delegated it is snapshotted as the state `sandbox reset` returns to."""
    password = paths.bind_password_file.read_text(encoding="utf-8").strip()
    service_password = ensure_secret(paths.service_password_file, new_password)
    ca_file = paths.tls_dir / "ca.pem"
    if samba.ensure_kdc(paths):  # a DC made before the sandbox ran its KDC: restart it with the KDC on
        say("Restarting Samba AD DC with its KDC")
        samba.stop(paths)
        samba.start(paths)
    conn = connect_when_ready(LDAPS_URL, ca_file, ADMIN_DN, password)
    try:
        schema.extend(conn, BASE_DN)  # no-op when present; covers snapshots made before a schema change
        if accounts is None:
            accounts = seed.read_seeded(conn)
        # Here rather than in provisioning, so sandboxes and snapshots made before it get the account too.
        service_sid = serviceaccount.ensure_account(conn, BASE_DN, service_password)
        # The password was just (re)set, so its keys have a new version: export them after it (issue 26).
        kerberos.ensure_spn(conn, BASE_DN)
        kerberos.write_krb5_conf(paths)
        kerberos.wait_for_kdc(paths)
        kerberos.export_keytab(paths, serviceaccount.SERVICE_SAM, paths.service_keytab)
        say(f"Delegating group management on {WRITEBACK_OU} to {serviceaccount.SERVICE_SAM}")
        _delegate(conn, paths, password, WRITEBACK_OU, service_sid)
        for sam in soa_group_sams(scenario):
            # The original AD group of an SOA-converted sample group lives in OU=Groups, outside the delegated
            # OU: the service account gets exactly the rights to write it, on that object only.
            original = f"CN={sam},{ONPREM_GROUPS_OU}"
            say(f"Delegating takeover of {original} to {serviceaccount.SERVICE_SAM}")
            _delegate(
                conn,
                paths,
                password,
                original,
                service_sid,
                sddl=serviceaccount.takeover_sddl(conn, BASE_DN, service_sid),
            )
        _delegate_cloud_users(conn, paths, password, service_sid, scenario, accounts, say)
        serviceaccount.grant_deleted_objects_read(
            smb_conf=paths.smb_conf,
            sam_ldb=paths.samba_dir / "private" / "sam.ldb",
            base_dn=BASE_DN,
            sid=service_sid,
        )
    finally:
        conn.unbind_s()
    if fresh:
        _save_initial(paths, say)
    client_secret = ensure_secret(paths.client_secret_file, new_client_secret)
    console_url, console_token = console.ensure(paths)
    tenant_file = paths.tenant_file(users)
    say(f"Writing the tenant ({len(accounts)} synced objects) to {tenant_file}")
    write_tenant(tenant_file, build_tenant(scenario, accounts, client_secret))
    info = SandboxInfo(
        dir=paths.root,
        ldap_url=LDAPS_URL,
        gc_url=GC_URL,
        starttls_url=LDAP_URL,
        base_dn=BASE_DN,
        bind_dn=ADMIN_DN,
        bind_password=password,
        ca_file=ca_file,
        users_ou=STAFF_OU,
        groups_ou=WRITEBACK_OU,
        onprem_groups_ou=ONPREM_GROUPS_OU,
        cloud_users_ou=CLOUD_USERS_OU,
        domain=DNS_DOMAIN,
        users=users,
        tenant_id=scenario.tenant_id,
        client_id=scenario.client_id,
        client_secret=client_secret,
        config=paths.config_file,
        tenant_file=tenant_file,
        samba_pid=samba.running_pid(paths),
        service_bind_dn=serviceaccount.service_dn(BASE_DN),
        service_bind_password=service_password,
        service_sid=service_sid,
        console_url=console_url,
        console_token=console_token,
        service_keytab=paths.service_keytab,
        service_principal=kerberos.principal(serviceaccount.SERVICE_SAM),
        krb5_conf=paths.krb5_conf,
        kerberos_url=kerberos.KERBEROS_URL,
    )
    # The DC's half of the info is saved first: the DC is usable even if the emulator then fails to start.
    configfile.write(info, paths)
    save_info(paths, info)
    if not emulator.emulator_available():
        say("The Graph emulator is not installed: the sandbox runs the DC only")
        return info
    if emulator.running_pid(paths) is None:
        say("Starting the Graph emulator")
        emulator.start(paths, tenant_file)
    endpoint = emulator.read_endpoint(paths)
    if endpoint is not None:
        info = dataclasses.replace(
            info,
            graph_url=str(endpoint["graph_url"]),
            authority=str(endpoint["authority"]),
            graph_ca_file=Path(str(endpoint["ca_file"])),
            emulator_pid=emulator.running_pid(paths),
            emulator_admin_token=endpoint.get("admin_token"),
        )
    configfile.write(info, paths)
    save_info(paths, info)
    say(f"Sandbox is up: {paths.info_file}")
    return info


def _delegate_cloud_users(
    conn: Any,
    paths: SandboxPaths,
    password: str,
    sid: str,
    scenario: Scenario,
    accounts: list[seed.Account],
    say: Progress,
) -> None:
    """docs/least-privilege.md, "Cloud users": on OU=Cloud Users, create and delete user objects, write their
    mapped attributes, names, userAccountControl and anchor, and reset their password; on the original AD
    account of each SOA-converted sample user, write its mapped attributes, userAccountControl and anchor only.
    Each once: skipped where the account's SID is in the object's DACL already."""
    if not serviceaccount.is_delegated(conn, CLOUD_USERS_OU, sid):
        say(f"Delegating cloud user accounts on {CLOUD_USERS_OU} to {serviceaccount.SERVICE_SAM}")
        _delegate(
            conn,
            paths,
            password,
            CLOUD_USERS_OU,
            sid,
            sddl=serviceaccount.cloud_users_sddl(conn, BASE_DN, sid),
        )
    by_sam = {a.sam.lower(): a for a in accounts if a.kind == "user"}
    for sam in soa_user_sams(scenario):
        account = by_sam.get(sam.lower())
        if account is None:
            raise SandboxError(f"the SOA sample user {sam!r} has no AD account in {STAFF_OU}")
        if serviceaccount.is_delegated(conn, account.dn, sid):
            continue
        # Like the SOA group's original: outside any delegated OU, rights on that one object only.
        say(f"Delegating takeover of {account.dn} to {serviceaccount.SERVICE_SAM}")
        _delegate(
            conn, paths, password, account.dn, sid, sddl=serviceaccount.user_takeover_sddl(conn, BASE_DN, sid)
        )


def _save_initial(paths: SandboxPaths, say: Progress) -> None:
    """Snapshot the DC as it is now, freshly made (Samba is stopped for it: LMDB files are only consistent
    at rest), and start it again."""
    say(f"Saving the freshly made DC to {paths.initial_snapshot} (for `writeback sandbox reset`)")
    started = time.monotonic()
    samba.stop(paths)
    snapshot.save_initial(paths)
    samba.start(paths)
    say(f"  saved and restarted in {time.monotonic() - started:.1f} s")


@dataclasses.dataclass(frozen=True)
class ResetReport:
    """What `sandbox reset` did, step by step, and how long it took."""

    info: SandboxInfo
    steps: tuple[str, ...]
    seconds: float


def sandbox_reset(directory: Path, progress: Progress | None = None) -> ResetReport:
    """Put the sandbox in ``directory`` back as `sandbox up` first made it, in seconds: the DC restored from
    its initial snapshot, the emulator restarted on the tenant file as written for that DC, and writeback's
    state in the sandbox (DIR/state.sqlite, and the PostgreSQL database when it runs) emptied, since it
    described what is gone. Kept: the domain's identity, the ports, the CA and certificates, every secret
    and the consoles' tokens; sandbox.json changes only where a restart must (pids, the emulator's admin
    token). Stop any `writeback run` on the sandbox first: it would find its state gone underneath it."""
    say = progress or _quiet
    paths = SandboxPaths(Path(directory).resolve())
    marker = snapshot.read_marker(paths) if paths.root.is_dir() else None
    if marker is None or not paths.info_file.exists():
        raise SandboxError(f"no sandbox in {paths.root} to reset; run `writeback sandbox up` first")
    if not snapshot.has_initial(paths):
        raise SandboxError(
            f"the sandbox in {paths.root} has no snapshot of its freshly made DC ({paths.initial_snapshot}): "
            "it was made by an older writeback. Run `writeback sandbox down`, remove the directory and run "
            "`writeback sandbox up` again; from then on `reset` works"
        )
    started = time.monotonic()
    steps: list[str] = []

    def step(text: str) -> None:
        steps.append(text)
        say(text)

    with _locked(paths):
        samba.require_root()
        info = load_info(paths.root)
        users = int(marker["users"])
        samba.stop(paths)
        snapshot.restore_initial(paths)
        samba.ensure_kdc(paths)  # an initial snapshot made before the sandbox ran its KDC
        step(
            f"DC restored from {paths.initial_snapshot} (as provisioned and seeded, {users} generated users)"
        )
        samba.start(paths)
        step(f"Samba AD DC restarted ({LDAPS_URL}; same domain, CA and passwords)")
        if info.service_keytab is not None:
            # The snapshot may hold an older key version of the service account than the keytab (every `up`
            # that completes the sandbox resets its password): export the keys the restored DC has.
            kerberos.wait_for_kdc(paths)
            kerberos.export_keytab(paths, serviceaccount.SERVICE_SAM, paths.service_keytab)
            step(f"Service account's keytab exported again ({paths.service_keytab})")
        if paths.exchange_schema_file.exists():
            _extend_exchange(paths, say)
            step("Exchange's schema attributes added again (this sandbox was made with --exchange-schema)")
        scenario = load_scenario()
        accounts = seed.load_accounts(paths.accounts_file)
        if accounts is None:
            password = paths.bind_password_file.read_text(encoding="utf-8").strip()
            conn = connect_when_ready(LDAPS_URL, paths.tls_dir / "ca.pem", ADMIN_DN, password)
            try:
                accounts = seed.read_seeded(conn)
            finally:
                conn.unbind_s()
        client_secret = paths.client_secret_file.read_text(encoding="utf-8").strip()
        write_tenant(info.tenant_file, build_tenant(scenario, accounts, client_secret))
        if emulator.emulator_available():
            emulator.stop(paths)
            port = urllib.parse.urlsplit(info.graph_url).port if info.graph_url else None
            endpoint = emulator.start(paths, info.tenant_file, port=port or 0)
            info = dataclasses.replace(
                info,
                graph_url=str(endpoint["graph_url"]),
                authority=str(endpoint["authority"]),
                graph_ca_file=Path(str(endpoint["ca_file"])),
                emulator_pid=emulator.running_pid(paths),
                emulator_admin_token=endpoint.get("admin_token"),
            )
            step(f"Graph emulator restarted on {info.graph_url} with the initial tenant {info.tenant_file}")
        removed = [
            f
            for f in (
                paths.state_file,
                *(paths.state_file.with_name(paths.state_file.name + x) for x in _SQLITE),
            )
            if f.exists()
        ]
        for f in removed:
            f.unlink()
        if removed:
            step(
                f"writeback's state {paths.state_file} removed (it described the directory before the reset)"
            )
        if postgres.running_pid(paths) is not None:
            postgres.reset_database(paths)
            step(f"writeback's PostgreSQL state emptied (database {postgres.DATABASE})")
        info = dataclasses.replace(info, samba_pid=samba.running_pid(paths))
        configfile.write(info, paths)
        save_info(paths, info)
        info = _kerberos_part(paths, info, False, say)
        info = _postgres_part(paths, info, False, say)
    return ResetReport(info, tuple(steps), time.monotonic() - started)


_SQLITE = ("-wal", "-shm", "-journal")


def sandbox_down(directory: Path) -> None:
    """Stop the emulator and Samba (SIGTERM, SIGKILL after a timeout). The directory is kept for a later up."""
    paths = SandboxPaths(Path(directory).resolve())
    if not paths.root.is_dir():
        raise SandboxError(f"no sandbox in {paths.root}")
    with _locked(paths):
        emulator.stop(paths)
        postgres.stop(paths)
        samba.stop(paths)


def sandbox_status(directory: Path) -> SandboxStatus:
    """What runs in the sandbox in ``directory`` (no lock taken: a read-only look)."""
    return _status(SandboxPaths(Path(directory).resolve()))


def _status(paths: SandboxPaths) -> SandboxStatus:
    samba_pid = samba.running_pid(paths)
    emulator_pid = emulator.running_pid(paths)
    endpoint = emulator.read_endpoint(paths) if emulator_pid is not None else None
    return SandboxStatus(
        dir=paths.root,
        provisioned=snapshot.read_marker(paths) is not None,
        samba_pid=samba_pid,
        emulator_pid=emulator_pid,
        emulator_installed=emulator.emulator_available(),
        ldap_url=LDAPS_URL if samba_pid is not None else None,
        graph_url=str(endpoint["graph_url"]) if endpoint else None,
        postgres_pid=postgres.running_pid(paths),
    )


__all__ = ["ResetReport", "load_info", "sandbox_down", "sandbox_reset", "sandbox_status", "sandbox_up"]
