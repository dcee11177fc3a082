"""DIR/writeback.toml: a ready configuration pointing writeback at the sandbox (secrets by file reference).

It binds as the sandbox's service account, delegated only what docs/least-privilege.md lists on the target
OU, so whoever tries writeback on the sandbox runs it with production's rights."""

from __future__ import annotations

import json
from pathlib import Path

from writeback.testbed.sandbox import console
from writeback.testbed.sandbox.info import SandboxInfo
from writeback.testbed.sandbox.layout import SandboxPaths


def _q(value: object) -> str:
    # A JSON string is a valid TOML basic string (same escapes), which keeps odd paths safe.
    return json.dumps(str(value))


def render(info: SandboxInfo, paths: SandboxPaths) -> str:
    if not info.service_bind_dn:
        raise ValueError("the sandbox's service account must exist before its config is written")
    """The config text. [source] is left out while no emulator runs: the loader's default Graph URL is
    Microsoft's, and a sandbox config must never point at a real tenant."""
    lines = ["# Written by `writeback sandbox up`. Secrets are referenced by file, never inline.", ""]
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
    lines += [
        "[target]",
        f"ldap_urls = [{_q(info.ldap_url)}]",
        f"gc_url = {_q(info.gc_url)}",
        # The least-privileged service account (docs/least-privilege.md), never Administrator.
        f"bind_dn = {_q(info.service_bind_dn)}",
        f"bind_password_file = {_q(paths.service_password_file)}",
        f"base_dn = {_q(info.base_dn)}",
        f"target_ou = {_q(info.groups_ou)}",
        f"ca_file = {_q(info.ca_file)}",
        "",
        "[state]",
        f"path = {_q(paths.state_file)}",
    ]
    if info.console_url:
        # `writeback run` serves the console here; sign in with DIR/secrets/console_token (an operator).
        lines += [
            "",
            "[service]",
            f"listen = {_q(console.listen(info.console_url))}",
            "",
            "[console]",
            f"tokens_file = {_q(paths.console_tokens_file)}",
        ]
    return "\n".join(lines) + "\n"


def write(info: SandboxInfo, paths: SandboxPaths) -> Path:
    paths.config_file.write_text(render(info, paths), encoding="utf-8")
    return paths.config_file
