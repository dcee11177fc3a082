"""Signed opaque state tokens of the Graph emulator."""

from __future__ import annotations

from writeback.testbed.emulator.statetoken import TokenSigner


def test_round_trip_and_opacity() -> None:
    signer = TokenSigner(b"k" * 32)
    payload = {"t": "d", "s": 42, "sel": ["displayName", "members"]}
    token = signer.dumps(payload)
    assert signer.loads(token) == payload
    assert "displayName" not in token  # compressed and encoded, not readable JSON
    assert token.replace("-", "").replace("_", "").isalnum()  # safe in a URL as is


def test_tampered_or_foreign_tokens_are_rejected() -> None:
    signer = TokenSigner(b"k" * 32)
    token = signer.dumps({"s": 1})
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert signer.loads(flipped) is None
    assert TokenSigner(b"x" * 32).loads(token) is None
    for junk in ("", "!!!", "AAAA", "a" * 100):
        assert signer.loads(junk) is None
