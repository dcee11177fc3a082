"""The sandbox's console: a free loopback port for service.listen and an operator token to sign in with.

The port is chosen once and kept (read back from DIR/sandbox.json), so the console's address a person
bookmarked stays the same across `writeback sandbox up` runs. The token is stored 0600 in
DIR/secrets/console_token and also in sandbox.json (0600); the tokens file the service reads holds only its
SHA-256 hash (see :mod:`writeback.console.auth`).
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

from writeback.console.auth import new_token, token_line
from writeback.testbed.sandbox.layout import SandboxPaths
from writeback.testbed.sandbox.secretfiles import ensure_secret, write_private

HOST = "127.0.0.1"
OPERATOR = "sandbox-operator"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _previous_port(paths: SandboxPaths) -> int | None:
    try:
        url = json.loads(paths.info_file.read_text(encoding="utf-8")).get("console_url")
        return urlsplit(str(url)).port if url else None
    except (OSError, ValueError):
        return None


def ensure(paths: SandboxPaths) -> tuple[str, str]:
    """(console URL, operator token): made on first use, the same ones afterwards. Writes the tokens file."""
    port = _previous_port(paths) or free_port()
    token = ensure_secret(paths.console_token_file, new_token)
    write_private(paths.console_tokens_file, token_line(OPERATOR, "operator", token))
    return f"http://{HOST}:{port}", token


def listen(url: str) -> str:
    """service.listen for a console URL ("http://127.0.0.1:8123" -> "127.0.0.1:8123")."""
    return urlsplit(url).netloc
