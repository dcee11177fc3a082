"""Commands that print lists stop quietly when their reader closes the pipe (`writeback show | head`,
`writeback log | head`): run through a real pipe closed after one line, with more output than a pipe buffer
(64 KiB on Linux) holds, so the command really meets EPIPE while writing."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

from writeback.adapters.state.sqlite import SqliteStore

PIPE_BUFFER = 65536


def _head_one_line(ws: Any, *args: str) -> tuple[bytes, int, str]:
    """Run `writeback ARGS | head -1`: read one line, close the pipe, let the command finish."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "writeback", "--config", str(ws.config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ws.env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode(errors="replace")
    code = proc.wait(timeout=120)
    proc.stderr.close()
    return first, code, err


def _assert_quiet(ws: Any, *args: str) -> None:
    full = ws.run(*args)
    assert full.code == 0, full.err
    assert len(full.out.encode()) > 2 * PIPE_BUFFER, "too little output to overflow the pipe buffer"
    first, code, err = _head_one_line(ws, *args)
    assert first.decode().rstrip("\n") == full.out.splitlines()[0]
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert err == "", err
    assert code == 0, f"exit code {code} (141 would be a death by SIGPIPE)"


def test_show_piped_into_head_exits_quietly(workspace: Any, ldap_conn: Any, cloud: Any) -> None:
    ws = workspace([])
    members = [u["onPremisesDistinguishedName"].encode() for u in cloud.synced_users()[:30]]
    assert len(members) == 30
    for i in range(300):  # 300 managed groups of 30 members: about 240 KiB of `show` output
        anchor = f"Group_{uuid.uuid4()}".encode()
        ldap_conn.add_s(
            f"CN=Pipe {i:03d},{ws.ou}",
            [
                ("objectClass", [b"top", b"group"]),
                ("sAMAccountName", [f"pipe{uuid.uuid4().hex[:12]}".encode()]),
                ("msDS-ExternalDirectoryObjectId", [anchor]),
                ("adminDescription", [anchor]),
                ("member", members),
            ],
        )
    _assert_quiet(ws, "show")
    _assert_quiet(ws, "show", "--json")


def test_log_piped_into_head_exits_quietly(workspace: Any) -> None:
    ws = workspace([])
    store = SqliteStore(str(ws.config.parent / "state.sqlite"))
    try:
        with store.batch():
            for i in range(5000):
                store.log(
                    f"run{i // 100:04d}",
                    "add_members",
                    "success",
                    cloud_id=str(uuid.UUID(int=i)),
                    group_name=f"Group {i}",
                    dn=f"CN=Group {i},OU=Writeback,DC=corp,DC=example,DC=test",
                    detail={"members": 3},
                )
    finally:
        store.close()
    _assert_quiet(ws, "log", "--limit", "5000")
    _assert_quiet(ws, "log", "--limit", "5000", "--json")
