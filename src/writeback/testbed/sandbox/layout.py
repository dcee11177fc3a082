"""Where a sandbox keeps its files, and the fixed facts of its throwaway domain.

One frozen value names every path under the sandbox directory so that the modules which write a file and the
ones which read it cannot disagree about where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REALM = "CORP.EXAMPLE.TEST"
NETBIOS_DOMAIN = "CORP"
DNS_DOMAIN = "corp.example.test"
BASE_DN = "DC=corp,DC=example,DC=test"
DC_HOSTNAME = "dc.corp.example.test"
ADMIN_DN = f"CN=Administrator,CN=Users,{BASE_DN}"
STAFF_OU = f"OU=Staff,{BASE_DN}"
WRITEBACK_OU = f"OU=Writeback,{BASE_DN}"
ONPREM_GROUPS_OU = f"OU=Groups,{BASE_DN}"
# Where writeback creates AD accounts for cloud-only members ([users] target_ou, issue 24).
CLOUD_USERS_OU = f"OU=Cloud Users,{BASE_DN}"

LDAPS_URL = "ldaps://127.0.0.1:636"
LDAP_URL = "ldap://127.0.0.1:389"  # StartTLS
GC_URL = "ldaps://127.0.0.1:3269"
DC_PORTS = (389, 636, 3268, 3269)

# Bumped whenever provisioning or seeding changes what a sandbox contains, so stale snapshots are not reused.
LAYOUT_VERSION = 5  # 2: LMDB backend (was TDB, which caps a partition at 4 GiB); 3: Windows' schemaIDGUID;
# 4: the SOA sample group GG-Finance-Approvers (issue 13); 5: OU=Cloud Users and the SOA sample user nora.kok
# (issue 24)
# From this many generated users on, seeding is slow enough to snapshot, and the tenant file is written as JSON.
BIG_TENANT_USERS = 2000


@dataclass(frozen=True)
class SandboxPaths:
    """Every file of one sandbox, relative to its directory."""

    root: Path

    @property
    def samba_dir(self) -> Path:
        return self.root / "samba"

    @property
    def smb_conf(self) -> Path:
        return self.samba_dir / "etc" / "smb.conf"

    @property
    def samba_run_dir(self) -> Path:
        return self.samba_dir / "run"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def bind_password_file(self) -> Path:
        return self.secrets_dir / "bind_password"

    @property
    def service_password_file(self) -> Path:
        """The password of the least-privileged service account DIR/writeback.toml binds as."""
        return self.secrets_dir / "service_password"

    @property
    def service_keytab(self) -> Path:
        """The service account's Kerberos keys (samba-tool domain exportkeytab), mode 0600."""
        return self.secrets_dir / "svc-writeback.keytab"

    @property
    def krb5_conf(self) -> Path:
        """The sandbox realm's krb5.conf (clients use it with KRB5_CONFIG; /etc/krb5.conf is left alone)."""
        return self.root / "krb5.conf"

    @property
    def kerberos_config_file(self) -> Path:
        """`sandbox up --kerberos`: a config binding with the keytab (SASL GSSAPI, sealed, on port 389)."""
        return self.root / "writeback-kerberos.toml"

    @property
    def client_secret_file(self) -> Path:
        return self.secrets_dir / "client_secret"

    @property
    def console_token_file(self) -> Path:
        """The console's operator token (the sandbox's; `writeback sandbox up` prints where it is)."""
        return self.secrets_dir / "console_token"

    @property
    def console_tokens_file(self) -> Path:
        """console.tokens_file of DIR/writeback.toml: the token's hash and role, never the token itself."""
        return self.secrets_dir / "console_tokens"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def samba_log(self) -> Path:
        return self.logs_dir / "samba.log"

    @property
    def emulator_log(self) -> Path:
        return self.logs_dir / "emulator.log"

    @property
    def samba_pid_file(self) -> Path:
        return self.root / "samba.pid"

    @property
    def emulator_pid_file(self) -> Path:
        return self.root / "emulator.pid"

    @property
    def emulator_dir(self) -> Path:
        return self.root / "emulator"

    @property
    def emulator_json(self) -> Path:
        return self.emulator_dir / "emulator.json"

    @property
    def provisioned_file(self) -> Path:
        """Written last by provisioning: its presence means the directory holds a complete, seeded domain."""
        return self.root / "provisioned.json"

    @property
    def accounts_file(self) -> Path:
        """The seeded AD accounts as read back after seeding (part of a snapshot)."""
        return self.root / "accounts.json"

    def tenant_file(self, users: int) -> Path:
        """YAML, readable, for small tenants; JSON for big ones, which loads 50-100x faster (0.2 s instead of
        13 s for 20,000 users). JSON is YAML too, so both are valid tenant files for the emulator."""
        return self.root / ("tenant.json" if users >= BIG_TENANT_USERS else "tenant.yaml")

    @property
    def info_file(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def config_file(self) -> Path:
        return self.root / "writeback.toml"

    @property
    def state_file(self) -> Path:
        return self.root / "state.sqlite"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def initial_snapshot(self) -> Path:
        """The DC as `sandbox up` made it (provisioned, seeded, service account delegated), before anything ran
        on it: what `sandbox reset` restores. This sandbox's own, unlike the shared cache of big directories."""
        return self.snapshots_dir / "dc-initial.tar.gz"

    @property
    def exchange_schema_file(self) -> Path:
        """Present once the schema was extended with Exchange's attributes (`up --exchange-schema`): the initial
        snapshot may predate it, so `reset` extends the restored schema again."""
        return self.root / "exchange-schema"

    def ha_config_file(self, name: str) -> Path:
        """DIR/writeback-ha-a.toml, -b.toml: two instances on the sandbox's PostgreSQL (`up --postgres`)."""
        return self.root / f"writeback-ha-{name}.toml"

    def ha_home(self, name: str) -> Path:
        """Where HA instance ``name`` keeps its health file."""
        return self.root / f"ha-{name}"
