"""A malformed Graph object from the emulator (issue 23, finding 9): skipped and reported, the rest replicates.

The emulator's raw-edit admin API stores objects verbatim, bypassing Graph's validation, so it can hold what
Graph documents as impossible: a group whose displayName is a number. Only the emulator runs (no DC).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_graph_emulator import settings_for, tenant, uid
from tests.unit.fakes import MemoryReplica

from writeback.adapters.graph import GraphClient, GraphSource
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator

pytestmark = pytest.mark.emulator

BAD = uid(999)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(tenant(), tmp_path / "emulator") as handle:
        yield handle


def put_group(handle: EmulatorHandle, body: dict[str, Any]) -> None:
    handle.admin("objects/groups", body)


def test_a_group_with_a_number_as_display_name_is_skipped_and_the_others_replicate(
    emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    good = {g["id"] for g in tenant()["groups"]}
    put_group(
        emulator,
        {
            "id": BAD,
            "displayName": 12345,
            "mailNickname": "bad",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "members": [uid(1)],
        },
    )
    replica = MemoryReplica()
    with GraphClient(settings_for(emulator)) as client, caplog.at_level(logging.WARNING, "writeback.graph"):
        source = GraphSource(client)
        report = source.sync(replica)
        groups = replica.snapshot().groups
        assert set(groups) == good and BAD not in groups
        assert [(s.object_id, s.field) for s in report.skipped] == [(BAD, "displayName")]
        assert any(getattr(r, "event", None) == "graph_object_skipped" for r in caplog.records)
        link = replica.get_delta_link("groups")
        assert link is not None

        # The rest goes on: a change to a good group arrives; the link moved on past the bad group.
        first = sorted(good)[0]
        put_group(emulator, {"id": first, "displayName": "Renamed"})
        report = source.sync(replica)
        assert replica.snapshot().groups[first].display_name == "Renamed"
        assert replica.get_delta_link("groups") != link

        # Fixed in the cloud: the group arrives at its next change.
        put_group(emulator, {"id": BAD, "displayName": "Fixed"})
        report = source.sync(replica)
        fixed = replica.snapshot().groups[BAD]
        assert fixed.display_name == "Fixed" and report.skipped == ()
        # Its member, read (well-formed) while the group was malformed, was kept: delta never sends it again.
        assert {m.id for m in fixed.members} == {uid(1)}
