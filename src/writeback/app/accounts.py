"""How many user accounts writeback created, read from the provisioning log (the console's status).

The state keeps no list of accounts (a created account is found again by its anchor in AD, never by a stored
DN), but every create and delete of one is a log row whose detail says ``"target": "user"``: an account
counts while its last such row is a successful create.
"""

from __future__ import annotations

from writeback.core.ports import Journal, LogQuery

MAX_ROWS = 10_000  # per action: the log's own page limit; more accounts than this read as "at least" it


def created_accounts(journal: Journal) -> int:
    """User accounts writeback created and has not deleted since, as the provisioning log records them."""
    last: dict[str, tuple[int, str]] = {}  # cloud user id -> (row id, action) of its newest create or delete
    for action in ("create", "delete"):
        for e in journal.query_log(LogQuery(action=action, result="success", limit=MAX_ROWS)):
            if (e.detail or {}).get("target") != "user" or not e.cloud_id:
                continue
            if e.cloud_id not in last or last[e.cloud_id][0] < e.id:
                last[e.cloud_id] = (e.id, action)
    return sum(1 for _, action in last.values() if action == "create")
