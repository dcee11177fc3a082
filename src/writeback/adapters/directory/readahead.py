"""The big AD reads of a full plan, made while Graph is read (issue 27: the time before the first write).

A plan of every group (a first apply, a full resync, a deep reconcile) reads two things from AD whose
question does not depend on what Graph answers: every managed group under the base (with its members), and,
with more member keys than :data:`~writeback.adapters.directory.adapter.FULL_SCAN_TERMS`, every user account
(the account search then reads them all, page by page). :class:`ReadAhead` reads them in a thread of its own,
on connections of its own (a python-ldap connection is not shared between threads), while the pass reads
Graph; the gathering step (:mod:`writeback.app.gathering`) then asks :meth:`ReadAhead.reader`'s directory as
it asks any directory, and gets the answer read ahead where the question is the one read ahead: the same
anchors, attributes and prefixes for the managed groups; more keys than the full-scan bound for the accounts
(fewer are searched for by key, as always, since a search by key also finds non-user objects). Every other
read goes to the directory itself at gathering time. The plan's directory reads still happen in its gathering
step: the step chooses; only the timing of two answers moves.

**Exactness and staleness.** The plan is computed against AD as read, as it always is: today's gathering
read also precedes the writes by seconds to minutes, and the apply copes with AD having moved meanwhile
(member writes are idempotent, conflicts re-read). A read ahead is older by the length of the Graph read.
The engine writes nothing to AD before its plan, and the pass holds the writer claim, so only someone else
(an administrator, another tool) can change AD in between; what the next reconcile relies on is kept exact:

- The read ahead starts with the DC's watermark and a listing of every managed group's uSNChanged
  (:meth:`head`). The pass compares that listing with the one it takes after the sync
  (:func:`writeback.app.reconcile.begin`): any managed group changed, created or deleted in between, and the
  managed groups read ahead are dropped (read again at gathering time). Otherwise they are AD's groups as
  of the listing, whose stamps the pass records.
- The accounts read ahead are as of the watermark taken before them. The pass records that watermark
  (the lower one) as where the next quick reconcile looks for changed accounts, so an account created,
  changed or moved after the read ahead has its groups compared again then, as one changed after today's
  gathering read is.
- A read ahead from another DC than the pass's listing (USNs are per DC) is not used at all.

**Memory.** The accounts are kept once, indexed by SID and GUID; an account a key asks for is handed to the
plan as that same object (holding the key's strings: ``shared_account``) and stays indexed under it, so
the plan's accounts are not a second copy. The index (and what no key asked for) is dropped when the pass
closes the read ahead, after its plan. The managed groups are handed over, not copied.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from writeback.core.model import ANCHOR_PREFIXES, DirectoryAccount, DirectoryGroup
from writeback.core.ports import Directory, GroupStamp, ResolvedAccounts, UsnWatermark

if TYPE_CHECKING:
    from writeback.adapters.directory.adapter import AccountKeys, LdapDirectory

log = logging.getLogger(__name__)

# read_managed_groups' defaults, for LdapDirectory and the read ahead's wrapper alike (one place).
MANAGED_ANCHORS: tuple[str, ...] = ("msDS-ExternalDirectoryObjectId", "adminDescription")
MANAGED_MAPPED: tuple[str, ...] = ("description", "displayName")


class _Stopped(Exception):
    """The read ahead was closed before it ended (the pass failed or needs it no more)."""


class AccountIndex:
    """Every user account read ahead, by canonical SID and by canonical GUID (the forms AD's values decode
    to, as :class:`~writeback.adapters.directory.adapter.AccountKeys` keys them)."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.by_sid: dict[str, DirectoryAccount] = {}
        self.by_guid: dict[str, DirectoryAccount] = {}
        self._stop = stop

    def __len__(self) -> int:
        return len(self.by_guid)

    def add(self, account: DirectoryAccount) -> None:
        """One account as read; the first read of a key wins (a page read again changes nothing)."""
        if self._stop is not None and self._stop.is_set():
            raise _Stopped
        if account.object_sid:
            self.by_sid.setdefault(account.object_sid, account)
        self.by_guid.setdefault(account.object_guid, account)

    def named(self, sid_keys: AccountKeys, guid_keys: AccountKeys) -> list[DirectoryAccount]:
        """The accounts these keys name, each once (a key names one account: SIDs and GUIDs are unique in a
        forest, so the order a scan of every user would meet them in changes nothing)."""
        found: dict[int, DirectoryAccount] = {}
        for canonical in sid_keys:
            if (account := self.by_sid.get(canonical)) is not None:
                found[id(account)] = account
        for canonical in guid_keys:
            if (account := self.by_guid.get(canonical)) is not None:
                found[id(account)] = account
        return list(found.values())

    def replace(self, old: DirectoryAccount, new: DirectoryAccount) -> None:
        """Index ``new`` (the same account holding the keys' strings) where ``old`` was: one copy is kept."""
        if new is old:
            return
        if old.object_sid and self.by_sid.get(old.object_sid) is old:
            self.by_sid[old.object_sid] = new
        if self.by_guid.get(old.object_guid) is old:
            self.by_guid[old.object_guid] = new


class ReadAhead:
    """The managed groups and every user account, read in a thread from the moment it is made, on a
    directory of its own (:meth:`LdapDirectory.sibling`). Close it (``with``) once the plan is made."""

    def __init__(
        self,
        directory: LdapDirectory,
        anchor_attributes: Sequence[str],
        mapped: Sequence[str],
        prefixes: Sequence[str],
    ) -> None:
        self._directory = directory
        self.asked = (tuple(anchor_attributes), tuple(mapped), tuple(prefixes))
        self._stop = threading.Event()
        self._head = threading.Event()
        self._done = threading.Event()
        self.watermark: UsnWatermark | None = None
        self.stamps: tuple[GroupStamp, ...] = ()
        self._accounts: AccountIndex | None = None
        self._groups: list[DirectoryGroup] | None = None
        self._groups_dropped = False
        self.error: BaseException | None = None
        self.seconds = 0.0  # LDAP time of the read ahead (overlapped with the Graph read)
        self._closed = False
        self._stopped = False  # closed before it ended: its last search was broken off, not failed
        self._sibling = directory.sibling()
        self._thread = threading.Thread(target=self._read, name="ad-read-ahead", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        started = time.perf_counter()
        anchors, mapped, prefixes = self.asked
        try:
            self.watermark, stamps = self._sibling.read_group_stamps(anchors, prefixes)
            self.stamps = tuple(stamps)
            self._head.set()
            index = AccountIndex(self._stop)
            self._sibling.read_every_account(index.add)
            self._accounts = index
            if self._stop.is_set():
                raise _Stopped
            self._groups = self._sibling.read_managed_groups(anchors, mapped, prefixes)
        except _Stopped:
            self._stopped = True
        except BaseException as exc:  # kept for the plan, which then reads at gathering time
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - started
            self._head.set()
            self._done.set()
            try:
                self._sibling.close()
            except Exception:  # closing a connection already lost: nothing left to release
                log.debug("closing the read-ahead connections failed", exc_info=True)

    def head(self) -> tuple[UsnWatermark, tuple[GroupStamp, ...]] | None:
        """The DC's watermark and the managed groups' stamps taken before the reads (None: it failed)."""
        self._head.wait()
        if self.watermark is None:
            self._wait()  # logs the failure
            return None
        return self.watermark, self.stamps

    def _wait(self) -> bool:
        """Wait for the read to end; whether it ended well (a failure is logged once, the plan reads itself)."""
        if not self._done.is_set():
            started = time.perf_counter()
            self._done.wait()
            # On the plan's way: AD read time (the plan's own timing leaves it out), counted at once.
            self._directory.count_read_ahead({}, 0.0, time.perf_counter() - started)
        if self.error is not None:
            log.warning(
                "the AD read made during the Graph read failed (%s); the plan reads AD itself",
                self.error,
                extra={"event": "ad_read_ahead_failed"},
            )
            self.error = None
            self._accounts = self._groups = None
        return self._accounts is not None

    def accounts(self) -> AccountIndex | None:
        """Every user account, once read (None: the read failed or was closed)."""
        return self._accounts if self._wait() else None

    def take_managed_groups(self, asked: tuple[tuple[str, ...], ...]) -> list[DirectoryGroup] | None:
        """The managed groups read ahead, handed over once, when ``asked`` is the question read ahead."""
        if asked != self.asked or self._groups_dropped or not self._wait():
            return None
        groups, self._groups = self._groups, None
        return groups

    def drop_groups(self) -> None:
        """The managed groups changed since they were read ahead: the plan reads them itself."""
        self._groups_dropped = True

    def reader(self) -> Directory:
        """The directory for the gathering step (see the module docstring)."""
        return cast(Directory, AheadDirectory(self._directory, self))

    def close(self) -> None:
        """Stop the read if it still runs, wait for its thread, count its LDAP work into the directory's,
        drop what was not handed over. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        self._accounts = self._groups = None
        stats = self._sibling.stats
        if self._stopped and stats.get("search_errors"):
            stats["search_errors"] -= 1  # the search this close broke off (the console counts failures)
        self._directory.count_read_ahead(stats, self.seconds, 0.0)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AheadDirectory:
    """The directory as the gathering step of a full plan reads it: :meth:`resolve_accounts` and
    :meth:`read_managed_groups` answered from a :class:`ReadAhead` where the question is the one read ahead,
    every other read (and every other question) by the directory itself."""

    def __init__(self, directory: LdapDirectory, ahead: ReadAhead) -> None:
        self._directory, self._ahead = directory, ahead

    def __getattr__(self, name: str) -> Any:
        return getattr(self._directory, name)

    def resolve_accounts(self, sids: Iterable[str], guids: Iterable[str]) -> ResolvedAccounts:
        return self._directory.resolve_accounts(sids, guids, known=self._ahead.accounts())

    def read_managed_groups(
        self,
        anchor_attributes: Sequence[str] = MANAGED_ANCHORS,
        mapped: Sequence[str] = MANAGED_MAPPED,
        prefixes: Sequence[str] = ANCHOR_PREFIXES,
    ) -> list[DirectoryGroup]:
        asked = (tuple(anchor_attributes), tuple(mapped), tuple(prefixes))
        groups = self._ahead.take_managed_groups(asked)
        if groups is not None:
            return groups
        return self._directory.read_managed_groups(anchor_attributes, mapped, prefixes)
