"""Opaque, tamper-proof state tokens for ``$skiptoken`` and ``$deltatoken``.

Graph's tokens are opaque strings that carry the query (select list, filter) and the position; clients must
follow links as given. The emulator packs the same information into compact JSON, signs it with HMAC-SHA256
and base64url-encodes both, so tokens survive as plain URL components, a hand-edited or foreign token is
detected (and answered with ``syncStateNotFound``), and no server-side table is needed for delta links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from typing import Any

_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and checks state-token payloads with one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def dumps(self, payload: dict[str, Any]) -> str:
        body = zlib.compress(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        return _b64(self._mac(body) + body)

    def loads(self, token: str) -> dict[str, Any] | None:
        """The payload, or None when the token is malformed or was not signed with this key."""
        try:
            raw = _unb64(token)
        except (ValueError, TypeError):
            return None
        mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            payload = json.loads(zlib.decompress(body))
        except (zlib.error, ValueError):
            return None
        return payload if isinstance(payload, dict) else None
