"""Everything one running emulator holds, built in one place from a tenant and a data directory."""

from __future__ import annotations

import bisect
import os
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from writeback.testbed.emulator.auth import AccessTokens, load_or_create_key
from writeback.testbed.emulator.delta import DeltaEngine, DeltaSettings
from writeback.testbed.emulator.faults import FaultSettings, Stats
from writeback.testbed.emulator.profile import GraphProfile, Throttle
from writeback.testbed.emulator.statetoken import TokenSigner
from writeback.testbed.emulator.tenant import Tenant


def _load_or_create_secret(path: Path) -> bytes:
    """The HMAC key of state tokens, kept so that delta links stay valid across a restart."""
    if path.exists():
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    data = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return data


class SortedIds:
    """Sorted id lists cached per (key, version): list paging resumes after the last id it returned."""

    def __init__(self, capacity: int = 64) -> None:
        self._cache: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()
        self._capacity = capacity

    def get(self, key: str, version: int, compute: Callable[[], list[str]]) -> list[str]:
        cached = self._cache.get(key)
        if cached is not None and cached[0] == version:
            self._cache.move_to_end(key)
            return cached[1]
        ids = sorted(compute())
        self._cache[key] = (version, ids)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return ids

    @staticmethod
    def start_after(ids: list[str], after: str | None) -> int:
        return bisect.bisect_right(ids, after) if after is not None else 0


@dataclass
class EmulatorState:
    tenant: Tenant
    tokens: AccessTokens
    signer: TokenSigner
    delta: DeltaEngine
    data_dir: Path
    save_path: Path | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)
    stats: Stats = field(default_factory=Stats)
    sorted_ids: SortedIds = field(default_factory=SortedIds)
    profile: GraphProfile = field(default_factory=GraphProfile)  # Graph's response time and throttling
    throttle: Throttle = field(default_factory=Throttle)

    @classmethod
    def build(
        cls,
        tenant: Tenant,
        data_dir: Path,
        *,
        save_path: Path | None = None,
        delta_settings: DeltaSettings | None = None,
    ) -> EmulatorState:
        data_dir.mkdir(parents=True, exist_ok=True)
        signer = TokenSigner(_load_or_create_secret(data_dir / "state-token.key"))
        tokens = AccessTokens(tenant.tenant_id, load_or_create_key(data_dir / "token-signing-key.pem"))
        delta = DeltaEngine(tenant, signer, delta_settings)
        return cls(tenant, tokens, signer, delta, data_dir, save_path)
