"""DIR/writeback.toml: a ready configuration pointing writeback at the sandbox (secrets by file reference).

It binds as the sandbox's service account, delegated only what docs/least-privilege.md lists on the target
OU, so whoever tries writeback on the sandbox runs it with production's rights.

With `sandbox up --postgres`, DIR/writeback-ha-a.toml and DIR/writeback-ha-b.toml are the same configuration
for two `writeback run` instances sharing the sandbox's PostgreSQL as their state: each serves its own console
(a loopback port chosen once and kept) and writes its own health file, so failover can be watched in the
sandbox (docs/ha.md)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from writeback.testbed.sandbox import console
from writeback.testbed.sandbox.info import SandboxInfo
from writeback.testbed.sandbox.layout import SandboxPaths
from writeback.testbed.sandbox.secretfiles import write_private

HA_INSTANCES = ("a", "b")


@dataclass(frozen=True)
class SharedState:
    """[state] of the HA configs: the sandbox's PostgreSQL, its password by file."""

    url: str
    password_file: Path


@dataclass(frozen=True)
class Instance:
    """What differs between the HA configs: the console's address and the health file."""

    console_url: str
    health_file: Path


def _q(value: object) -> str:
    # A JSON string is a valid TOML basic string (same escapes), which keeps odd paths safe.
    return json.dumps(str(value))


def render(
    info: SandboxInfo,
    paths: SandboxPaths,
    *,
    state: SharedState | None = None,
    instance: Instance | None = None,
    kerberos: bool = False,
) -> str:
    """The config text: DIR/writeback.toml, or with ``state`` and ``instance`` one of the HA configs.

    [source] is left out while no emulator runs: the loader's default Graph URL is Microsoft's, and a sandbox
    config must never point at a real tenant."""
    if not info.service_bind_dn:
        raise ValueError("the sandbox's service account must exist before its config is written")
    lines = ["# Written by `writeback sandbox up`. Secrets are referenced by file, never inline.", ""]
    if instance is not None:
        lines[1:1] = [
            "# One of two instances sharing the sandbox's PostgreSQL state: start both with",
            "# `writeback --config <file> run`; one is active, the other stands by (docs/ha.md).",
        ]
    if info.graph_url:
        lines += [
            "[source]",
            f"tenant_id = {_q(info.tenant_id)}",
            f"client_id = {_q(info.client_id)}",
            f"client_secret_file = {_q(paths.client_secret_file)}",
            f"authority = {_q(info.authority)}",
            f"graph_url = {_q(info.graph_url)}",
            f"ca_file = {_q(info.graph_ca_file)}",
            "",
        ]
    else:
        lines += ["# [source] is written once the Graph emulator runs (writeback sandbox up).", ""]
    if kerberos:
        # Issue 26: no password anywhere. SASL GSSAPI with the service account's keytab, signed and sealed on
        # port 389 (ldap/localhost is the DC's SPN in the sandbox), and the same on the Global Catalog's 3268:
        # the mode that works under every DC hardening setting (docs/hardened-dc.md). Run writeback with
        # KRB5_CONFIG pointing at the sandbox's krb5.conf.
        lines += [
            f"# Run with KRB5_CONFIG={info.krb5_conf}",
            "[target]",
            'auth = "kerberos"',
            f"ldap_urls = [{_q(info.kerberos_url)}]",
            f'gc_url = "ldap://{kerberos_host()}:3268"',
            f"keytab = {_q(info.service_keytab)}",
            f"principal = {_q(info.service_principal)}",
        ]
    else:
        lines += [
            "[target]",
            f"ldap_urls = [{_q(info.ldap_url)}]",
            f"gc_url = {_q(info.gc_url)}",
            f"bind_password_file = {_q(paths.service_password_file)}",
        ]
    lines += [
        # The least-privileged service account (docs/least-privilege.md), never Administrator.
        f"bind_dn = {_q(info.service_bind_dn)}",
        f"base_dn = {_q(info.base_dn)}",
        f"target_ou = {_q(info.groups_ou)}",
        f"ca_file = {_q(info.ca_file)}",
        "",
        # Every kind of group writeback can write, so one config (and one state) covers what the demo shows:
        # a second config with another scope over the same OU would leave this one's plan saying "the
        # configuration changed" and reporting the other's groups as "no longer updated". Off by default
        # outside the sandbox, where a tenant's Teams groups should not land in AD unasked.
        "[scope]",
        "include_microsoft365 = true",
        "include_mail_enabled = true",
        "",
    ]
    if info.cloud_users_ou:
        # Issue 24: AD accounts for cloud users, off by default as everywhere. "soa" writes cloud-managed
        # (SOA-converted) users into their original AD accounts; "cloud_members" also creates accounts for
        # cloud-only members (scripts/demo shows it with a config of its own). target_ou is delegated to the
        # service account (docs/least-privilege.md, Cloud users).
        lines += [
            "[users]",
            'provision = "off"  # "off" | "soa" | "cloud_members"',
            f"target_ou = {_q(info.cloud_users_ou)}",
            "",
        ]
    lines += ["[state]"]
    if state is None:
        lines.append(f"path = {_q(paths.state_file)}")
    else:
        # The password is never inside state.url (the config refuses it): it is read from a 0600 file.
        lines += [f"url = {_q(state.url)}", f"password_file = {_q(state.password_file)}"]
    console_url = instance.console_url if instance is not None else info.console_url
    if console_url:
        # `writeback run` serves the console here; sign in with DIR/secrets/console_token (an operator).
        lines += ["", "[service]", f"listen = {_q(console.listen(console_url))}"]
        if instance is not None:
            lines.append(f"health_file = {_q(instance.health_file)}")
        lines += ["", "[console]", f"tokens_file = {_q(paths.console_tokens_file)}"]
    return "\n".join(lines) + "\n"


def write(info: SandboxInfo, paths: SandboxPaths) -> Path:
    write_private(paths.config_file, render(info, paths))
    return paths.config_file


def kerberos_host() -> str:
    from writeback.testbed.sandbox.kerberos import SPN_HOST

    return SPN_HOST


def write_kerberos(info: SandboxInfo, paths: SandboxPaths) -> Path:
    """DIR/writeback-kerberos.toml: DIR/writeback.toml binding with the keytab instead of the password."""
    write_private(paths.kerberos_config_file, render(info, paths, kerberos=True))
    return paths.kerberos_config_file


def _previous_console(path: Path) -> str | None:
    """The console URL an existing HA config serves, so its address stays the same across `up` runs."""
    try:
        listen = tomllib.loads(path.read_text(encoding="utf-8"))["service"]["listen"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"http://{listen}" if isinstance(listen, str) and listen else None


def write_ha(info: SandboxInfo, paths: SandboxPaths, state: SharedState) -> tuple[Path, ...]:
    """DIR/writeback-ha-a.toml and -b.toml (see the module docstring); returns their paths."""
    taken = {info.console_url}
    written = []
    for name in HA_INSTANCES:
        target = paths.ha_config_file(name)
        url = _previous_console(target)
        while url is None or url in taken:
            url = f"http://{console.HOST}:{console.free_port()}"
        taken.add(url)
        home = paths.ha_home(name)
        home.mkdir(mode=0o700, exist_ok=True)
        instance = Instance(console_url=url, health_file=home / "health.json")
        write_private(target, render(info, paths, state=state, instance=instance))
        written.append(target)
    return tuple(written)
