"""One writeback.toml writer for every test that runs writeback against the sandbox (CLI, service, crash).

writeback binds as the sandbox's service account, delegated on the test's OU exactly as
docs/least-privilege.md says: production's rights. The Graph side is the sandbox's shared emulator or a test's
private one (:class:`GraphApp` from either)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.testbed.fixtures import delegate_to_service_account


@dataclass(frozen=True)
class GraphApp:
    """Where writeback reads Graph, and as which app."""

    tenant_id: str
    client_id: str
    client_secret: str
    authority: str
    graph_url: str
    ca_file: str

    @classmethod
    def of_sandbox(cls, info: Any) -> GraphApp:
        return cls(
            info.tenant_id,
            info.client_id,
            info.client_secret,
            info.authority,
            info.graph_url,
            str(info.graph_ca_file),
        )

    @classmethod
    def of_emulator(cls, handle: Any) -> GraphApp:
        return cls(
            handle.tenant_id,
            handle.client_id,
            handle.client_secret,
            handle.authority,
            handle.graph_url,
            str(handle.ca_file),
        )


def write_config(
    home: Path,
    info: Any,
    ou: str,
    *,
    graph: GraphApp,
    scope: str,
    extra: str = "",
    target_ou: str | None = None,
    ca_file: str | None = None,
    password_file: Path | None = None,
    short_timeouts: bool = False,
) -> Path:
    """``home``/writeback.toml for the sandbox DC managing ``ou`` only; secrets in files beside it.

    ``scope``: the [scope] table; ``ca_file`` / ``password_file``: override the DC's CA or the bind password (to
    test the errors); ``short_timeouts``: fail fast on a stopped DC or emulator (fault tests)."""
    home.mkdir(parents=True, exist_ok=True)
    delegate_to_service_account(info, ou)
    (home / "client_secret").write_text(graph.client_secret)
    assert info.service_bind_password, f"the sandbox in {info.dir} has no service account"
    pw = password_file or home / "bind_password"
    if password_file is None:
        pw.write_text(info.service_bind_password)
    config = home / "writeback.toml"
    config.write_text(f"""
[source]
tenant_id = "{graph.tenant_id}"
client_id = "{graph.client_id}"
client_secret_file = "{home / "client_secret"}"
authority = "{graph.authority}"
graph_url = "{graph.graph_url}"
ca_file = "{graph.ca_file}"
max_retries = 3
{"timeout = 10" if short_timeouts else ""}

[target]
ldap_urls = ["{info.ldap_url}"]
gc_url = "{info.gc_url}"
bind_dn = "{info.service_bind_dn}"
bind_password_file = "{pw}"
base_dn = "{ou}"
target_ou = "{target_ou or ou}"
ca_file = "{ca_file or info.ca_file}"
{"timeout = 5" if short_timeouts else ""}

{scope}

[state]
path = "{home / "state.sqlite"}"
{extra}
""")
    return config


def selected(group_ids: list[str]) -> str:
    """The [scope] table for ``group_ids`` (none: on-prem dynamic groups only)."""
    ids = ", ".join(f'"{g}"' for g in group_ids)
    return f'[scope]\nmode = "{"selected" if group_ids else "none"}"\ngroup_ids = [{ids}]'
