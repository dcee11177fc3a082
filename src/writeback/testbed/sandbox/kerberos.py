"""Kerberos in the sandbox: the DC's KDC, a private krb5.conf, the service account's keytab, the LDAP SPN.

- Samba runs its KDC (``server services`` gains ``kdc``) on loopback, port 88.
- DIR/krb5.conf names that KDC for the realm; clients point ``KRB5_CONFIG`` at it. /etc/krb5.conf is never
  written: the sandbox must not change how the machine resolves any realm. DNS is not consulted
  (``dns_lookup_kdc``/``rdns``/``dns_canonicalize_hostname`` off): the sandbox DC has no DNS service.
- The DC is reached on loopback, where no name resolves to the DC's own host name. Kerberos clients ask for
  the service ticket ``ldap/<host of the URL>`` (writeback turns libldap's reverse lookup off), so the
  sandbox registers ``ldap/localhost`` on the DC's computer account, and the Kerberos URL is
  ``ldap://localhost:389``. A real DC has ``ldap/<its FQDN>`` already (docs/least-privilege.md).
- DIR/secrets/svc-writeback.keytab (0600) holds the service account's keys, exported with ``samba-tool domain
  exportkeytab --principal``, after every reset of its password (each reset raises the key version).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import ldap

from writeback.errors import SandboxError
from writeback.testbed.sandbox import processes
from writeback.testbed.sandbox.layout import DNS_DOMAIN, REALM, SandboxPaths
from writeback.testbed.sandbox.secretfiles import write_private

SERVER_SERVICES = "ldap, cldap, kdc"
# smb.conf's "ldap server require strong auth" (samba.configure says why this value).
STRONG_AUTH = "allow_sasl_over_tls"
KDC_PORT = 88
SPN_HOST = "localhost"
KERBEROS_URL = f"ldap://{SPN_HOST}:389"


def local_host_names() -> tuple[str, ...]:
    """This machine's host name and canonical name. libldap checks a TLS certificate for a URL naming
    ``localhost`` against the machine's canonical name instead (OpenLDAP's tls2.c), so the sandbox's
    certificate carries them too: ``ldaps://localhost`` is the Kerberos URL of the Global Catalog and of a
    Kerberos bind inside TLS, whose SPN ldap/localhost is registered."""
    names = {socket.gethostname()}
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, flags=socket.AI_CANONNAME):
            if info[3]:
                names.add(info[3])
    return tuple(sorted(n for n in names if n and n != "localhost"))


def principal(sam: str) -> str:
    return f"{sam}@{REALM}"


def krb5_conf_text() -> str:
    return f"""# Written by `writeback sandbox up`: the sandbox realm's KDC. Use with KRB5_CONFIG=<this file>.
[libdefaults]
    default_realm = {REALM}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    # TCP: a Kerberos reply with a PAC does not fit a UDP datagram
    udp_preference_limit = 1

[realms]
    {REALM} = {{
        kdc = 127.0.0.1:{KDC_PORT}
    }}

[domain_realm]
    {SPN_HOST} = {REALM}
    .{DNS_DOMAIN} = {REALM}
    {DNS_DOMAIN} = {REALM}
"""


def write_krb5_conf(paths: SandboxPaths) -> Path:
    write_private(paths.krb5_conf, krb5_conf_text())
    return paths.krb5_conf


def wait_for_kdc(paths: SandboxPaths, timeout: float = 30.0) -> None:
    processes.wait_until_listening(
        KDC_PORT, pid_file=paths.samba_pid_file, log_file=paths.samba_log, what="Samba's KDC", timeout=timeout
    )


def export_keytab(paths: SandboxPaths, sam: str, keytab: Path) -> None:
    """``samba-tool domain exportkeytab`` for one principal into ``keytab`` (replaced, mode 0600)."""
    keytab.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = keytab.with_name(f".{keytab.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    argv = [
        "samba-tool", "domain", "exportkeytab", str(tmp),
        f"--principal={principal(sam)}", "-s", str(paths.smb_conf),
    ]  # fmt: skip
    old = os.umask(0o077)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    finally:
        os.umask(old)
    if result.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise SandboxError(
            f"samba-tool domain exportkeytab for {sam} failed: {result.stderr.strip()[-1000:]}"
        )
    os.chmod(tmp, 0o600)
    os.replace(tmp, keytab)


def ensure_spn(conn: Any, base_dn: str, spn: str = f"ldap/{SPN_HOST}") -> None:
    """Register ``spn`` on the DC's computer account (in OU=Domain Controllers) unless it is there."""
    found = conn.search_s(
        f"OU=Domain Controllers,{base_dn}",
        ldap.SCOPE_ONELEVEL,
        "(objectClass=computer)",
        ["servicePrincipalName"],
    )
    dcs = [(dn, attrs) for dn, attrs in found if dn]
    if not dcs:
        raise SandboxError(f"no domain controller account under OU=Domain Controllers,{base_dn}")
    dn, attrs = dcs[0]
    have = {v.decode().lower() for v in attrs.get("servicePrincipalName", [])}
    if spn.lower() not in have:
        conn.modify_s(dn, [(ldap.MOD_ADD, "servicePrincipalName", [spn.encode()])])


__all__ = [
    "KERBEROS_URL",
    "SERVER_SERVICES",
    "ensure_spn",
    "export_keytab",
    "krb5_conf_text",
    "principal",
    "wait_for_kdc",
    "write_krb5_conf",
]
