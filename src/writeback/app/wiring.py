"""The one place where real adapters are chosen and built from settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.adapters.graph import DEFAULT_USER_SELECT, GraphClient, GraphSettings, GraphSource
from writeback.adapters.state.leases import session_name
from writeback.adapters.state.lock import WriterLock
from writeback.adapters.state.postgres import PostgresStore, redact
from writeback.adapters.state.sqlbase import SqlStore
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine, Progress
from writeback.app.lease import Fence, LeaderLease, instance_id
from writeback.config import Settings, resolve_secret
from writeback.core.expressions import compile_expression
from writeback.core.ports import CloudSource, GroupStream, ReplicaStore, SyncReport
from writeback.errors import ConfigError, StateLockedError

# This process as the leader lease and PostgreSQL's pg_stat_activity name it: the holder of its lease, and the
# application_name of its database sessions, so that the instance taking the lease over can end them.
PROCESS_INSTANCE = instance_id()


def graph_settings(settings: Settings) -> GraphSettings:
    s = settings.source
    sc = settings.scope
    if s is None:
        raise ConfigError(
            "there is no [source] table (Microsoft Graph settings)", file=settings.path, key="source"
        )
    cert = key = None
    if s.certificate_file:
        try:
            cert = Path(s.certificate_file).read_bytes()
            key = Path(s.private_key_file or "").read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the certificate credential: {exc.strerror}",
                file=settings.path,
                key="source.certificate_file",
            ) from exc
    secret = resolve_secret(s.client_secret, "source.client_secret") if s.client_secret else None
    return GraphSettings(
        tenant_id=s.tenant_id,
        client_id=s.client_id,
        client_secret=secret,
        certificate_pem=cert,
        private_key_pem=key,
        authority=s.authority,
        graph_url=s.graph_url,
        ca_file=s.ca_file,
        timeout=s.timeout,
        max_retries=s.max_retries,
        # Caps Retry-After waits and the exponential backoff alike (see writeback.adapters.graph.retry.Backoff).
        max_backoff=s.max_retry_after_seconds,
        max_in_flight=s.max_in_flight,
        # writebackConfiguration (isEnabled, onPremisesGroupType) is beta only: read it wherever the per-group
        # switch or a mail group's AD type matters.
        use_beta_for_groups=sc.mode == "writeback_enabled"
        or sc.include_microsoft365
        or sc.include_mail_enabled,
        read_group_settings=sc.mode == "writeback_enabled",
        # [users] (issue 24): a user's source of authority (beta onPremisesSyncBehavior.isCloudManaged) and
        # the Graph properties the user mappings read.
        read_user_sync_behavior=settings.users.enabled,
        user_select=user_select(settings),
    )


def user_select(settings: Settings) -> tuple[str, ...]:
    """The user properties delta reads: the default set, and with [users] on, every Graph property the user
    mappings name (Cloud Sync's defaults read givenName, surname, postalCode, streetAddress, mobilePhone and
    preferredLanguage, which the default set leaves out). With users off, the default set exactly (a changed
    $select makes delta start over)."""
    if not settings.users.enabled:
        return DEFAULT_USER_SELECT
    named = (a for text in settings.users.attributes.values() for a in compile_expression(text).attributes)
    computed = {"objectId"}  # given by writeback itself (writeback.core.mapping.user_source)
    extra = [a for a in dict.fromkeys(named) if a not in DEFAULT_USER_SELECT and a not in computed]
    return (*DEFAULT_USER_SELECT, *extra)


def build_graph(settings: Settings) -> tuple[GraphClient, GraphSource]:
    client = GraphClient(graph_settings(settings))
    return client, GraphSource(client)


def build_directory(settings: Settings) -> LdapDirectory:
    t = settings.target
    return LdapDirectory(
        DirectorySettings(
            urls=t.ldap_urls,
            bind_dn=t.bind_dn,
            bind_password=(
                "" if t.auth == "kerberos" else resolve_secret(t.bind_password, "target.bind_password")
            ),
            base_dn=t.base_dn,
            ca_file=t.ca_file,
            gc_urls=t.gc_urls,
            allow_insecure=t.insecure_plain_ldap,
            timeout=t.timeout,
            page_size=t.page_size,
            max_values_per_modify=t.max_values_per_modify,
            auth=t.auth,
            keytab=t.keytab,
            principal=t.principal,
        )
    )


def build_store(settings: Settings) -> SqlStore:
    """The state store: PostgreSQL when ``[state] url`` is set, else the SQLite file ``[state] path``."""
    st = settings.state
    if st.url:
        password = resolve_secret(st.password, "state.password") if st.password else None
        return PostgresStore(
            st.url,
            password=password,
            connect_timeout=st.connect_timeout,
            application_name=session_name(PROCESS_INSTANCE),
        )
    return SqliteStore(st.path)


def shared_state(settings: Settings) -> bool:
    """Whether several servers may share this state (PostgreSQL): then `writeback run` competes for the
    leader lease instead of holding the local writer lock."""
    return bool(settings.state.url)


class NoCloud:
    """The cloud source with scope.mode = "none": on-prem dynamic groups only, Graph is never called."""

    def sync(self, replica: ReplicaStore, stream: GroupStream | None = None) -> SyncReport:
        return SyncReport()


def build_engine(settings: Settings, progress: Progress | None = None) -> Engine:
    source: CloudSource = build_graph(settings)[1] if settings.scope.cloud_enabled else NoCloud()
    return Engine(settings, source, build_directory(settings), build_store(settings), progress)


@contextmanager
def writer_claim(settings: Settings, command: str) -> Iterator[Fence | None]:
    """Be the one writer of this state for a one-off command (`apply`, `state rebuild-replica`).

    SQLite: the local writer lock (:mod:`writeback.adapters.state.lock`). PostgreSQL: the leader lease, taken
    once without waiting and released at the end, so the command is refused while a `writeback run` is active
    on any server, and no service takes over while it writes. Yields the fence to hand the reconcile pass
    (None with SQLite, where the lock is held by the kernel for the whole process)."""
    if not shared_state(settings):
        with WriterLock(settings.state.path, command):
            yield None
        return
    s = settings.service
    lease = LeaderLease(
        build_store(settings), ttl=s.lease_ttl, renew_interval=s.lease_renew_interval, holder=PROCESS_INSTANCE
    )
    try:
        lease.start()
        if not lease.active:
            raise StateLockedError(
                f"the state database {redact(settings.state.url or '')} is in use: {lease.reason}. Only one "
                f"writer may use it at a time; `writeback {command}` waits for no one. Stop the active "
                "`writeback run` (systemctl stop writeback on that server), or run it there"
            )
        yield lease
    finally:
        lease.stop(release=True)
        lease.store.close()
