"""Saved plans and the health file are written without following a link another local user planted (issue 23,
finding 6): the temporary file is new and exclusive, and a target that is a symbolic link is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from writeback.adapters.state.files import write_private


def _victim(tmp_path: Path) -> Path:
    """A file the attacker wants overwritten (root-owned in the report)."""
    victim = tmp_path / "elsewhere" / "shadow"
    victim.parent.mkdir()
    victim.write_text("root's own\n")
    return victim


def test_a_target_that_is_a_symlink_is_refused_and_what_it_points_to_is_untouched(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    target = tmp_path / "plan.json"
    target.symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link") as caught:
        write_private(target, '{"plan": 1}')
    assert str(target) in str(caught.value)  # the message names the path
    assert victim.read_text() == "root's own\n"
    assert target.is_symlink() and os.readlink(target) == str(victim)  # the link is left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "plan.json"]  # no temporary left


def test_a_dangling_symlink_target_is_refused_too(tmp_path: Path) -> None:
    target = tmp_path / "health.json"
    target.symlink_to(tmp_path / "does-not-exist-yet")
    with pytest.raises(OSError, match="symbolic link"):
        write_private(target, "{}")
    assert not (tmp_path / "does-not-exist-yet").exists()


def test_a_planted_temporary_name_is_not_followed(tmp_path: Path) -> None:
    """The old code wrote through ``.NAME.PID.tmp`` with O_TRUNC and no O_EXCL|O_NOFOLLOW: a link planted at
    that predictable name made writeback (run as root) overwrite the file it points to."""
    victim = _victim(tmp_path)
    target = tmp_path / "plan.json"
    planted = tmp_path / f".{target.name}.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    write_private(target, '{"plan": 1}')
    assert victim.read_text() == "root's own\n"
    assert target.read_text() == '{"plan": 1}' and not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_regular_file_is_still_replaced_atomically_and_privately(tmp_path: Path) -> None:
    target = tmp_path / "new" / "health.json"
    write_private(target, "one")
    target.chmod(0o644)
    write_private(target, "two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["health.json"]  # the temporary file was renamed


def test_a_state_database_reached_through_a_link_is_refused_and_its_target_keeps_its_mode(
    tmp_path: Path,
) -> None:
    """chmod(2) follows links: a link planted at state.path (or at its -wal) would have made the file it points
    to 0600. The store refuses it, naming the path, and leaves the target as it was."""
    from writeback.adapters.state.sqlite import SqliteStore
    from writeback.errors import StateError

    victim = _victim(tmp_path)
    victim.chmod(0o644)
    for planted in ("state.db", "state.db-wal"):
        folder = tmp_path / planted.replace(".", "_")
        folder.mkdir()
        if planted != "state.db":
            (folder / "state.db").touch()
        (folder / planted).symlink_to(victim)
        with pytest.raises(StateError, match="symbolic link") as caught:
            SqliteStore(folder / "state.db")
        assert str(folder / planted) in str(caught.value)
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
        assert victim.read_text() == "root's own\n"
