# Shared by scripts/test, scripts/demo and scripts/bench: install what writeback needs on a fresh Debian
# machine (as root) and a virtualenv with the package. Idempotent and quiet when everything is there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${WRITEBACK_VENV:-$ROOT/.venv}"
DEBS=(samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind krb5-user ldap-utils ldb-tools postgresql
      libldap2-dev libsasl2-dev python3-venv python3-dev gcc
      libsasl2-modules-gssapi-mit libkrb5-dev faketime
      chromium)  # postgresql: the HA tests' state server; chromium: the console's browser tests (Playwright);
                 # libsasl2-modules-gssapi-mit: Cyrus SASL's GSSAPI plugin (auth = "kerberos"); libkrb5-dev: to
                 # build the gssapi package against MIT krb5; faketime: the clock-skew test

missing=()
for p in "${DEBS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "writeback needs these Debian packages: ${missing[*]}" >&2
    echo "run this script as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Samba's packaged services must not hold the ports the sandbox DC uses; the sandbox runs its own PostgreSQL.
for svc in samba-ad-dc smbd nmbd winbind postgresql; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || true
done

stamp="$VENV/.writeback-installed"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "Installing writeback into $VENV" >&2
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[test]"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
