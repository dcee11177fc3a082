"""A full pass's big AD reads made while Graph is read (issue 27: the time before the first write).

Before a pass whose Graph read is a full read (a first sync, a rebuild: :func:`reads_in_full`), which plans
every group, the engine asks the directory to read ahead (:meth:`writeback.app.engine.Engine.read_ahead`; the
LDAP adapter does it in a thread on connections of its own: :mod:`writeback.adapters.directory.readahead`, whose
docstring says what is read, and why what it answers is as exact as a read at gathering time). Once the sync is done
and the reconcile's scope decided (:func:`writeback.app.reconcile.begin`), :func:`adopt` decides whether the
plan may use it: only for a deep scope, only from the same DC, the managed groups only if none changed since
(the two listings of their stamps agree), and the pass then records the read ahead's watermark, taken before
it read anything. Otherwise the plan's gathering step reads AD itself, as without a read ahead.

A full resync found only during the sync (``410 Gone``) and a deep reconcile that falls due are decided after
the sync: their passes read AD after it, as before.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from writeback.core.ports import Directory, GroupStamp, Store, UsnWatermark

if TYPE_CHECKING:
    from writeback.app.reconcile import Reconcile

log = logging.getLogger("writeback.engine")


class AheadReads(Protocol):
    """A read ahead under way (the directory adapter's)."""

    def head(self) -> tuple[UsnWatermark, tuple[GroupStamp, ...]] | None:
        """The DC's watermark and every managed group's stamp, taken before the reads (None: it failed)."""
        ...

    def drop_groups(self) -> None:
        """Forget the managed groups read ahead (the plan reads them itself)."""
        ...

    def reader(self) -> Directory:
        """The directory the gathering step reads through: the answers read ahead where they apply."""
        ...

    def close(self) -> None:
        """Stop, wait, release (idempotent)."""
        ...


@runtime_checkable
class ReadsAhead(Protocol):
    """A directory that can read a full plan's big answers ahead of its gathering step."""

    def read_ahead(
        self, anchor_attributes: tuple[str, ...], mapped: tuple[str, ...], prefixes: tuple[str, ...]
    ) -> AheadReads: ...


def reads_in_full(store: Store) -> bool:
    """Whether a full pass about to sync reads Graph in full, as far as can be told before the sync: a replica
    with no delta link for a resource (the first sync or a rebuild: its round is full, so the reconcile is deep).

    A deep reconcile over stored delta links (``apply --deep``, a saved deep plan) does not read ahead: its Graph
    read is one delta round (well under a second when little changed), so there is nothing to hide the AD read
    behind, and reading ahead would only hold AD's answers longer. At large (1,000,000 memberships) it raised the
    peak of ``apply --deep`` from 532 to 606 MB (docs/benchmarks.md, "Issue 27: the merged result")."""
    return any(store.get_delta_link(resource) is None for resource in ("users", "groups"))


def adopt(ahead: AheadReads, scope: Reconcile) -> tuple[Directory | None, Reconcile]:
    """The directory the plan of ``scope`` reads through (None: the engine's own, nothing read ahead is used)
    and the scope to record (its watermark the read ahead's, when it is used: see the module docstring)."""
    if not scope.deep:
        return None, scope  # a quick reconcile plans some groups: it reads only what they need
    head = ahead.head()
    if head is None:
        return None, scope
    watermark, stamps = head
    if watermark.dc != scope.watermark.dc:
        log.info("the AD read made during the Graph read was on another DC than the reconcile's; not used")
        return None, scope
    if set(stamps) != set(scope.before):
        # A managed group changed, appeared or went in between: the listing the pass records would not
        # describe the groups read ahead. The plan reads them now; the accounts read ahead still serve.
        log.info("managed groups changed in AD during the Graph read; the plan reads them again")
        ahead.drop_groups()
    if watermark.usn < scope.watermark.usn:
        scope = replace(scope, watermark=watermark)
    return ahead.reader(), scope
