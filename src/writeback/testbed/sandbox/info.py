"""sandbox.json: the contract between a running sandbox and tests, benchmarks and external harnesses.

The file is written with mode 0600 because it holds the Administrator and service account passwords, the
client secret and the emulator's admin token; the in-memory value hides them from its repr, so a failing test
never prints them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from writeback.errors import SandboxError
from writeback.testbed.sandbox.layout import SandboxPaths
from writeback.testbed.sandbox.secretfiles import write_private

_PATH_FIELDS = (
    "dir",
    "ca_file",
    "graph_ca_file",
    "config",
    "tenant_file",
    "postgres_password_file",
    "service_keytab",
    "krb5_conf",
    "kerberos_config",
)


@dataclass(frozen=True)
class SandboxInfo:
    """Everything a client needs to use a running sandbox (the content of DIR/sandbox.json).

    The Graph fields are None while the sandbox runs without the emulator (not installed yet).
    """

    dir: Path
    ldap_url: str
    gc_url: str
    starttls_url: str
    base_dn: str
    bind_dn: str
    bind_password: str = field(repr=False)
    ca_file: Path
    users_ou: str
    groups_ou: str
    onprem_groups_ou: str
    domain: str
    users: int
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    config: Path
    tenant_file: Path
    samba_pid: int | None
    graph_url: str | None = None
    authority: str | None = None
    graph_ca_file: Path | None = None
    emulator_pid: int | None = None
    # The bearer token of the emulator's admin API (/_emulator/...); new at every emulator start.
    emulator_admin_token: str | None = field(default=None, repr=False)
    # The least-privileged account DIR/writeback.toml binds as: delegated only what docs/least-privilege.md
    # lists, on groups_ou. bind_dn / bind_password stay the Administrator's, for fixtures that need them.
    service_bind_dn: str | None = None
    service_bind_password: str | None = field(default=None, repr=False)
    service_sid: str | None = None
    # The console `writeback run --config DIR/writeback.toml` serves (service.listen, on a free loopback
    # port chosen once) and an operator token to sign in with (its hash is in DIR/secrets/console_tokens).
    console_url: str | None = None
    console_token: str | None = field(default=None, repr=False)
    # `sandbox up --postgres`: the libpq URL of the sandbox's PostgreSQL, without its password (the config
    # refuses a password inside state.url), the file holding the password (0600), and the server's pid.
    postgres_url: str | None = None
    postgres_pid: int | None = None
    postgres_password_file: Path | None = None
    # Two ready configs of `writeback run` instances sharing that PostgreSQL state, each with its own console
    # port and health file (DIR/writeback-ha-a.toml, -b.toml): high availability tried in the sandbox.
    ha_configs: tuple[str, ...] = ()
    # Where writeback creates AD accounts for cloud-only members ([users] target_ou, issue 24): OU=Cloud Users,
    # delegated to the service account as docs/least-privilege.md lists for users. None: a sandbox.json written
    # before it existed (`sandbox up` completes it).
    cloud_users_ou: str | None = None
    # Kerberos (issue 26): the service account's keytab (0600) and principal, the realm's krb5.conf (use it with
    # KRB5_CONFIG), the URL a Kerberos bind uses (ldap/localhost is the DC's SPN there; sealed, port 389), and
    # with `up --kerberos` the ready config binding with the keytab.
    service_keytab: Path | None = None
    service_principal: str | None = None
    krb5_conf: Path | None = None
    kerberos_url: str | None = None
    kerberos_config: Path | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in _PATH_FIELDS:
            if data[key] is not None:
                data[key] = str(data[key])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in _PATH_FIELDS:
            if values.get(key) is not None:
                values[key] = Path(values[key])
        values["ha_configs"] = tuple(values.get("ha_configs") or ())
        return cls(**values)


@dataclass(frozen=True)
class SandboxStatus:
    """What runs in a sandbox directory right now."""

    dir: Path
    provisioned: bool
    samba_pid: int | None
    emulator_pid: int | None
    emulator_installed: bool
    ldap_url: str | None
    graph_url: str | None
    postgres_pid: int | None = None

    @property
    def dc_running(self) -> bool:
        return self.samba_pid is not None

    @property
    def emulator_running(self) -> bool:
        return self.emulator_pid is not None

    @property
    def up(self) -> bool:
        """Both parts run (a sandbox whose emulator is not installed counts as up with its DC alone)."""
        return self.dc_running and (self.emulator_running or not self.emulator_installed)


def save_info(paths: SandboxPaths, info: SandboxInfo) -> None:
    write_private(paths.info_file, json.dumps(info.to_json(), indent=2) + "\n")


def load_info(directory: Path) -> SandboxInfo:
    """Read DIR/sandbox.json (written by sandbox_up). It says how to reach the sandbox, not whether it runs:
    use sandbox_status for that."""
    path = SandboxPaths(Path(directory)).info_file
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SandboxInfo.from_json(data)
    except FileNotFoundError as exc:
        raise SandboxError(
            f"no sandbox in {directory} ({path.name} missing); run `writeback sandbox up`"
        ) from exc
    except (OSError, ValueError, TypeError) as exc:
        raise SandboxError(f"{path} is unreadable or incomplete: {exc}") from exc
