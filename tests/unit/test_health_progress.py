"""The health file shows the writing progress while a cycle writes to AD, at most every
HEALTH_PROGRESS_INTERVAL seconds: never a file write per change (2,000 changes would be 2,000 file writes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.unit import builders
from tests.unit.fakes import FakeDirectory
from tests.unit.test_service import Clock, DeltaCloud, gid, group, settings
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.service import HEALTH_PROGRESS_INTERVAL, Service

GROUPS = 6


@dataclass
class SlowDirectory(FakeDirectory):
    """Each group create takes ``seconds`` of the service's clock."""

    clock: Clock | None = None
    seconds: float = 0.0

    def create_group(
        self, dn: str, attributes: Mapping[str, str | int | tuple[str, ...]], members: Sequence[str]
    ) -> None:
        assert self.clock is not None
        self.clock.now += self.seconds
        super().create_group(dn, attributes, members)


def _cycle(tmp_path: Path, seconds_per_create: float) -> tuple[list[tuple[str, int, int | None]], Service]:
    """One cycle creating GROUPS groups; what each health-file write showed (phase, done, total)."""
    users, accounts = builders.synced_people(GROUPS)
    cloud = DeltaCloud(users=users, groups={gid(i): group(i, [f"u{i}"]) for i in range(1, GROUPS + 1)})
    clock = Clock()
    directory = SlowDirectory(accounts=accounts, clock=clock, seconds=seconds_per_create)
    s = settings(tmp_path)
    service = Service(s, Engine(s, cloud, directory, SqliteStore(":memory:")), clock=clock)
    seen: list[tuple[str, int, int | None]] = []
    write = service.write_health

    def record() -> None:
        h = service.health
        seen.append((h.phase, h.progress_done, h.progress_total))
        write()

    service.write_health = record  # type: ignore[method-assign]
    at_apply: list[int] = []
    service.on_apply.append(lambda _plan, _result: at_apply.append(service.health.progress_done))
    service.cycle()
    assert at_apply == [GROUPS], "every change counted in memory (the console's view)"
    return seen, service


def test_fast_changes_write_the_health_file_only_at_the_phases(tmp_path: Path) -> None:
    seen, _ = _cycle(tmp_path, seconds_per_create=0.0)
    assert seen == [("graph", 0, None), ("plan", 0, None), ("apply", 0, GROUPS), ("idle", 0, None)]


def test_slow_changes_show_their_progress_at_most_every_interval(tmp_path: Path) -> None:
    step = (
        HEALTH_PROGRESS_INTERVAL * 0.4
    )  # changes start at 0, 0.4, 0.8, 1.2, 1.6, 2.0 intervals after "apply"
    seen, service = _cycle(tmp_path, seconds_per_create=step)
    applying = [s for s in seen if s[0] == "apply"]
    # The file written as the phase starts, then at the third change (0.8 interval: not yet), the fourth
    # (1.2 intervals since it was written: yes), the sixth (0.8 interval after that: not yet).
    assert applying == [("apply", 0, GROUPS), ("apply", 4, GROUPS)]
    assert seen[-1] == ("idle", 0, None)
    assert len(service.engine.directory.groups) == GROUPS  # type: ignore[attr-defined]
