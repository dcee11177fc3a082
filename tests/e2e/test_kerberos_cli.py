"""writeback end to end with no AD password anywhere: `[target] auth = "kerberos"` with the sandbox service
account's keytab, SASL GSSAPI signed and sealed on port 389 (no TLS on that connection at all).

- The CLI: `config check`, `plan`, `apply`, with `[users] provision = "cloud_members"`, so a password is set
  (unicodePwd in the add) over the sealed connection, which AD accepts as encrypted (MS-ADTS 3.1.1.3.1.5.1).
- The service: tests/e2e/test_kerberos_service.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_users_cloud_members import JULIA, _accounts, cloud_users_ou

pytestmark = [pytest.mark.samba]
__all__ = ["cloud_users_ou"]  # the fixture, shared with the users' test


def kerberize(config: Path, sandbox: Any) -> str:
    """Turn a test config's simple bind into the Kerberos bind, and remove the password file beside it."""
    text = config.read_text()
    text = re.sub(r"(?m)^ldap_urls = .*$", f'ldap_urls = ["{sandbox.kerberos_url}"]', text)
    text = re.sub(r'(?m)^gc_url = ".*"$', 'gc_url = "ldap://localhost:3268"', text)
    text, n = re.subn(
        r'(?m)^bind_password_file = ".*"$',
        f'auth = "kerberos"\nkeytab = "{sandbox.service_keytab}"\nprincipal = "{sandbox.service_principal}"',
        text,
    )
    assert n == 1, text
    config.write_text(text)
    (config.parent / "bind_password").unlink(missing_ok=True)
    assert "password" not in text.lower()
    return text


@pytest.fixture(autouse=True)
def krb5(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if not sandbox.service_keytab or not sandbox.krb5_conf:
        pytest.fail(f"the sandbox in {sandbox.dir} has no KDC or keytab; run `writeback sandbox up`")
    monkeypatch.setenv("KRB5_CONFIG", str(sandbox.krb5_conf))
    monkeypatch.delenv("KRB5CCNAME", raising=False)


def test_plan_apply_and_a_new_users_password_over_the_sealed_389_connection(
    sandbox: Any, cloud: Any, workspace: Any, ldap_conn: Any, ad: Any, cloud_users_ou: str
) -> None:
    portal = cloud.group_by_name("SG-Treasury-Portal")
    ws = workspace(
        [portal["id"]], extra=f'[users]\nprovision = "cloud_members"\ntarget_ou = "{cloud_users_ou}"\n'
    )
    text = ws.config.read_text().replace(f'base_dn = "{ws.ou}"', f'base_dn = "{sandbox.base_dn}"')
    ws.config.write_text(text)
    kerberize(ws.config, sandbox)

    check = ws.run("config", "check")
    assert check.code == 0, check.out + check.err
    assert "Kerberos bind OK as svc-writeback@CORP.EXAMPLE.TEST" in check.out
    assert "connection kerberos-sealed (SSF 256)" in check.out

    plan = ws.run("plan", "--json", "--out", str(ws.config.parent / "plan.json"))
    assert plan.code == 2, plan.out + plan.err
    applied = ws.run("apply", "--plan", str(ws.config.parent / "plan.json"))
    assert applied.code == 0, applied.out + applied.err

    ((dn, account),) = _accounts(ldap_conn, cloud_users_ou)
    assert account["adminDescription"] == [f"User_{JULIA}".encode()]
    assert int(account["pwdLastSet"][0]) != 0, "the password was set in the add, over the sealed connection"
    group = ad.anchored(portal["id"])
    assert group is not None and dn.lower() in {m.lower() for m in group.get("member", [])}
    again = ws.run("plan")
    assert again.code == 0, again.out + again.err
