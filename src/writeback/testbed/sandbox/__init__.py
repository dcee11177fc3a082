"""The writeback sandbox: a real Samba AD DC on loopback and the Graph emulator with a sample tenant.

``writeback sandbox up`` lets anyone try writeback before pointing it at production, and it is the
project's test bed. Public API::

    sandbox_up(directory, users=50, progress=None) -> SandboxInfo
    sandbox_reset(directory, progress=None) -> ResetReport
    sandbox_down(directory) -> None
    sandbox_status(directory) -> SandboxStatus
    load_info(directory) -> SandboxInfo

Nothing runs at import time.
"""

from writeback.testbed.sandbox.info import SandboxInfo, SandboxStatus, load_info
from writeback.testbed.sandbox.lifecycle import (
    ResetReport,
    sandbox_down,
    sandbox_reset,
    sandbox_status,
    sandbox_up,
)
from writeback.testbed.sandbox.tenant import users_explained

__all__ = [
    "ResetReport",
    "SandboxInfo",
    "SandboxStatus",
    "load_info",
    "sandbox_down",
    "sandbox_reset",
    "sandbox_status",
    "sandbox_up",
    "users_explained",
]
