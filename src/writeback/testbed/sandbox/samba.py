"""The Samba AD DC of the sandbox: install check, provisioning, smb.conf, start.

Follows the recipe verified on Debian 12 (/work/shared/reference/samba-testbed.md): a 2012 R2 schema domain
provisioned into the sandbox directory, listening on loopback only, LDAP services and the KDC only (no SMB or
DNS: writeback needs LDAP, the Global Catalog and Kerberos, and fewer services start faster and hold fewer
ports).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping

from writeback.errors import SandboxError
from writeback.testbed.sandbox import processes
from writeback.testbed.sandbox.kerberos import SERVER_SERVICES, STRONG_AUTH
from writeback.testbed.sandbox.layout import DC_PORTS, NETBIOS_DOMAIN, REALM, SandboxPaths
from writeback.testbed.tlsutil import ServerCert

APT_PACKAGES = (
    "samba",
    "samba-ad-dc",
    "samba-ad-provision",
    "samba-dsdb-modules",
    "winbind",
    "krb5-user",
    "ldap-utils",
    "ldb-tools",
)
START_TIMEOUT = 90.0


def ensure_installed() -> None:
    """Make sure the Samba AD DC programs exist, installing the Debian packages when we are root."""
    if shutil.which("samba") and shutil.which("samba-tool"):
        return
    command = "apt-get install -y --no-install-recommends " + " ".join(APT_PACKAGES)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SandboxError(f"Samba AD DC is not installed. Install it as root with: {command}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SandboxError(f"{' '.join(argv[:2])} failed:\n{result.stderr[-2000:]}")
    if not shutil.which("samba"):
        raise SandboxError(f"Samba is still missing after installing; try by hand: {command}")


def require_root() -> None:
    """The DC binds privileged ports (389, 636, 3268, 3269) and Samba insists on running as root."""
    if os.geteuid() != 0:
        raise SandboxError("the sandbox runs a Samba AD DC, which needs root (it binds ports 389 and 636)")


def provision(paths: SandboxPaths, admin_password: str) -> None:
    """Provision a fresh domain into ``paths.samba_dir`` (which must not exist yet). About 5-10 s."""
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    log = paths.logs_dir / "provision.log"
    argv = [
        "samba-tool", "domain", "provision",
        f"--targetdir={paths.samba_dir}",
        f"--realm={REALM}",
        f"--domain={NETBIOS_DOMAIN}",
        "--server-role=dc",
        "--dns-backend=NONE",
        "--use-rfc2307",
        "--base-schema=2012_R2",
        "--host-ip=127.0.0.1",
        # LMDB, not the default TDB: a TDB file cannot grow past 4 GiB, and the large benchmark (100,000 users,
        # 1,000,000 member links) filled it halfway through its first apply. The size is a limit on the
        # memory map, not space taken on disk.
        "--backend-store=mdb",
        "--backend-store-size=32Gb",
        "--option=interfaces=lo",
        "--option=bind interfaces only=yes",
        # The password is on the command line for the few seconds provisioning takes; the sandbox is a
        # local, root-only throwaway. It is never written to a log or an error message.
        f"--adminpass={admin_password}",
    ]  # fmt: skip
    with open(log, "wb") as out:
        try:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False)
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(f"samba-tool domain provision timed out; see {log}") from exc
    if result.returncode != 0:
        raise SandboxError(
            f"samba-tool domain provision failed (exit {result.returncode}); last lines of {log}:\n"
            f"{processes.log_tail(log)}"
        )


def configure(paths: SandboxPaths, cert: ServerCert) -> None:
    """Point smb.conf at our TLS certificate, keep every runtime file inside the sandbox, allow the schema
    extension, and run only the LDAP services."""
    run = paths.samba_run_dir
    for sub in (run, run / "ncalrpc", run / "winbindd", run / "ntp_signd"):
        sub.mkdir(parents=True, exist_ok=True)
    options = {
        # The KDC: writeback's Kerberos bind ([target] auth = "kerberos"; sandbox/kerberos.py).
        "server services": SERVER_SERVICES,
        "dsdb:schema update allowed": "true",
        # A throwaway directory: no fsync per write (Samba's own test suite does the same). Writes get
        # several times faster; a power cut could lose the sandbox, never real data.
        "ldb:nosync": "true",
        "tls enabled": "yes",
        # As a Windows DC requiring LDAP signing (Server 2025's default): a simple bind on 389 without TLS is
        # refused (strongerAuthRequired), a SASL bind there must sign or seal, and inside TLS a SASL bind
        # takes no layer. ("yes", Samba's default, also refuses every Kerberos bind inside TLS; AD does not.)
        "ldap server require strong auth": STRONG_AUTH,
        "tls keyfile": str(cert.key_file),
        "tls certfile": str(cert.cert_file),
        "tls cafile": str(cert.ca_file),
        "pid directory": str(run),
        "ncalrpc dir": str(run / "ncalrpc"),
        "winbindd socket directory": str(run / "winbindd"),
        "ntp signd socket directory": str(run / "ntp_signd"),
        "log file": str(paths.logs_dir / "samba.%m"),
    }
    text = paths.smb_conf.read_text(encoding="utf-8")
    paths.smb_conf.write_text(set_global_options(text, options), encoding="utf-8")


def set_global_options(smb_conf: str, options: Mapping[str, str]) -> str:
    """Set ``options`` in the [global] section of an smb.conf text: replace existing keys, add the others.

    Samba reads the last occurrence of a key, and provision writes some keys (server services, log file)
    that we must replace rather than add before.
    """
    lines = smb_conf.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().lower() == "[global]")
    except StopIteration as exc:
        raise SandboxError("smb.conf has no [global] section") from exc
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    wanted = {key.lower(): (key, value) for key, value in options.items()}
    section: list[str] = []
    for line in lines[start + 1 : end]:
        key = line.split("=", 1)[0].strip().lower() if "=" in line else None
        if key in wanted:
            continue
        section.append(line)
    while section and not section[-1].strip():
        section.pop()
    section += [f"\t{key} = {value}" for key, value in wanted.values()]
    return "\n".join([*lines[: start + 1], *section, "", *lines[end:]]).rstrip("\n") + "\n"


def ensure_kdc(paths: SandboxPaths) -> bool:
    """Turn the KDC (and the strong-auth rule above) on in an smb.conf written before (a snapshot or an older
    sandbox); True if changed (Samba must then be restarted)."""
    text = paths.smb_conf.read_text(encoding="utf-8")
    wanted = {"server services": SERVER_SERVICES, "ldap server require strong auth": STRONG_AUTH}
    if all(global_option(text, key) == value for key, value in wanted.items()):
        return False
    paths.smb_conf.write_text(set_global_options(text, wanted), encoding="utf-8")
    return True


def global_option(smb_conf: str, key: str) -> str | None:
    """The value of ``key`` as written in an smb.conf text (the last occurrence), or None."""
    found = re.findall(rf"^\s*{re.escape(key)}\s*=\s*(.*?)\s*$", smb_conf, flags=re.MULTILINE | re.IGNORECASE)
    return found[-1] if found else None


def relocate(paths: SandboxPaths, old_root: str) -> None:
    """Rewrite the absolute paths in smb.conf after a snapshot was restored into another directory."""
    text = paths.smb_conf.read_text(encoding="utf-8")
    new_root = str(paths.root)
    if old_root != new_root:
        text = re.sub(re.escape(old_root) + r"(?=/|$)", lambda _: new_root, text, flags=re.MULTILINE)
        paths.smb_conf.write_text(text, encoding="utf-8")


def busy_ports() -> list[int]:
    """Which of the DC's standard ports something on this machine already listens on."""
    return [port for port in DC_PORTS if processes.port_open(port)]


def start(paths: SandboxPaths) -> int:
    """Start Samba in the background and wait until LDAPS (636) accepts connections; return its pid."""
    busy = busy_ports()
    if busy:
        raise SandboxError(
            f"ports {', '.join(map(str, busy))} are already in use: another Samba DC (perhaps another sandbox) "
            "is running on this machine. Stop it with `writeback sandbox down --dir <its dir>`, or reuse it "
            "(for tests: export WRITEBACK_SANDBOX_DIR=<its dir>)."
        )
    samba = shutil.which("samba") or "/usr/sbin/samba"
    pid = processes.start_detached(
        [samba, "-s", str(paths.smb_conf), "-i", "-M", "single"],
        log_file=paths.samba_log,
        pid_file=paths.samba_pid_file,
        cwd=paths.root,
    )
    processes.wait_until_listening(
        636,
        pid_file=paths.samba_pid_file,
        log_file=paths.samba_log,
        what="Samba",
        timeout=START_TIMEOUT,
    )
    return pid


def running_pid(paths: SandboxPaths) -> int | None:
    return processes.read_pid(paths.samba_pid_file)


def stop(paths: SandboxPaths) -> bool:
    return processes.stop(paths.samba_pid_file)
