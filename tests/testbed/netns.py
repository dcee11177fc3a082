"""A private network namespace, for tests that need a sandbox of their own (reset it, run the demo on it).

A Samba DC listens on the standard LDAP ports, so a machine's loopback holds one; the session's sandbox may be
shared by several test sessions and must not be reset under them. A network namespace has its own loopback:
a second sandbox runs there without touching the first (the recipe in the Samba test-bed notes).

Commands run inside with ``ip netns exec``; the test process itself enters the namespace for a block with
setns(2) (Python 3.11 has no os.setns, hence ctypes), so its LDAP and HTTPS clients reach that sandbox.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence

CLONE_NEWNET = 0x40000000


def available() -> str | None:
    """None when namespaces can be made here, else why not (for a skip reason)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


class NetNamespace:
    """``ip netns add`` on creation, loopback up; :meth:`delete` removes it."""

    def __init__(self, prefix: str = "wbt") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        subprocess.run(self.argv(["ip", "link", "set", "lo", "up"]), check=True, capture_output=True)

    def argv(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """This thread in the namespace for the block (its new sockets are made there)."""
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {self.name}: {os.strerror(err)}")
            try:
                yield
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns back from {self.name}: {os.strerror(err)}")
        finally:
            os.close(target)
            os.close(own)

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)
