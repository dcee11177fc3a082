"""docs/least-privilege.md's "Cloud users" section is what the sandbox delegates (issue 24): the same attributes,
the same rights, in the SDDL block, the dsacls lines and the SOA user's line. The GUIDs themselves are checked
against the sandbox DC's schema in tests/integration/test_sandbox.py."""

from __future__ import annotations

import re
from pathlib import Path

from writeback.testbed.sandbox.serviceaccount import (
    CLOUD_USER_WRITTEN_ATTRIBUTES,
    RESET_PASSWORD_GUID,
    USER_MAPPED_ATTRIBUTES,
    USER_TAKEOVER_ATTRIBUTES,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "least-privilege.md"
USER_CLASS = "bf967aba-0de6-11d0-a285-00aa003049e2"


def _section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    return text.split("## Cloud users:", 1)[1].split("\n## ", 1)[0]


def _blocks() -> list[str]:
    return _section().split("```")[1::2]


def test_the_sddl_block_grants_exactly_the_written_attributes_and_reset_password() -> None:
    sddl = _blocks()[0]
    aces = [line.split()[0] for line in sddl.strip().splitlines()]
    names = [line.split(None, 1)[1] for line in sddl.strip().splitlines()[1:]]
    assert aces[0] == f"(OA;CI;CCDC;{USER_CLASS};;<SID>)"
    assert names == [*CLOUD_USER_WRITTEN_ATTRIBUTES, "Reset Password"]
    assert all(re.fullmatch(rf"\(OA;CIIO;WP;[0-9a-f-]{{36}};{USER_CLASS};<SID>\)", ace) for ace in aces[1:-1])
    assert aces[-1] == f"(OA;CIIO;CR;{RESET_PASSWORD_GUID};{USER_CLASS};<SID>)"


def test_the_dsacls_lines_grant_the_same() -> None:
    lines = [line for line in _blocks()[1].splitlines() if line.startswith("dsacls")]
    assert lines[0] == 'dsacls "%UOU%" /I:T /G "%SVC%:CCDC;user"'
    assert lines[1:-1] == [
        f'dsacls "%UOU%" /I:S /G "%SVC%:WP;{a};user"' for a in CLOUD_USER_WRITTEN_ATTRIBUTES
    ]
    assert lines[-1] == 'dsacls "%UOU%" /I:S /G "%SVC%:CA;Reset Password;user"'


def test_the_soa_users_line_grants_the_takeover_attributes_on_that_account_only() -> None:
    (line,) = [line for line in _blocks()[2].splitlines() if line.startswith("for ")]
    listed = line.split("(", 1)[1].split(")", 1)[0].split()
    assert listed == list(USER_TAKEOVER_ATTRIBUTES)
    assert '/G "%SVC%:WP;%A"' in line and "/I:" not in line
    # Never a name or the password on a converted user: writeback keeps them.
    assert not {"cn", "name", "sAMAccountName", "userPrincipalName", "unicodePwd"} & set(listed)
    assert set(USER_MAPPED_ATTRIBUTES) < set(listed)
