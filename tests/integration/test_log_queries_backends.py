"""The console's log queries on both state backends (SQLite and a real PostgreSQL): keyset paging on the row
id (``before``) and one member's rows (``member``: a cloud id, or a value the row's JSON detail holds, matched
case-insensitively and literally: a DN's backslash, ``%`` and ``_`` are not wildcards)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.testbed.stores import BACKENDS, open_store

from writeback.core.ports import LogQuery, LogRecord

pytestmark = [pytest.mark.postgres]


@pytest.mark.parametrize("backend", BACKENDS)
def test_before_pages_and_member_finds_a_users_rows(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    try:
        dn = "CN=Lopez\\, Ana_1%,OU=People,DC=corp"
        ids = store.log_rows(
            [
                LogRecord("r", "add_members", "success", cloud_id="g1", detail={"member_values": [dn]}),
                LogRecord(
                    "r", "add_members", "success", cloud_id="g2", detail={"member_values": [dn.upper()]}
                ),
                LogRecord(
                    "r",
                    "add_members",
                    "success",
                    cloud_id="g3",
                    detail={"member_values": ["CN=Lopez\\, AnaX1x"]},
                ),
                LogRecord("r", "skip_members", "info", cloud_id="g4", detail={"members": [{"id": "u-1"}]}),
                LogRecord("r", "create", "success", cloud_id="u-1", detail={"target": "user"}),
                LogRecord("r", "skip_members", "info", cloud_id="g5", detail={"members": [{"id": "u-10"}]}),
            ]
        )
        found = store.query_log(LogQuery(member=("u-1", dn)))
        assert [e.cloud_id for e in found] == ["u-1", "g4", "g2", "g1"]
        page1 = store.query_log(LogQuery(limit=4))
        page2 = store.query_log(LogQuery(limit=4, before=page1[-1].id))
        assert [e.id for e in page1 + page2] == sorted(ids, reverse=True)
        assert store.query_log(LogQuery(before=min(ids))) == []
    finally:
        store.close()
