"""Which groups of a first read may be planned and written while the read goes on (issue 27). Pure.

A group whose member list has been read in full is a consistent snapshot of that group, but not everything its
plan depends on is known while the rest of the tenant is still being read. A group is handed to planning early
only when its plan cannot come out otherwise than the plan after the whole read would make it:

- **Its scope is decidable from the group alone** (:func:`decidable`). Two inputs of the scope are read only
  after the groups round: ``onPremisesSyncBehavior`` of the groups that came from AD (read per group after
  the round, :mod:`writeback.adapters.graph.syncbehavior`), and the tenant's NewUnifiedGroupWritebackDefault,
  which decides the Microsoft 365 groups whose ``writebackConfiguration.isEnabled`` is null (read after the
  round by ``GraphSource._sync_group_settings``). Such groups wait for the pass after the read.
- **Children before parents** (:func:`ready`): a nested group member is referenced by the DN AD holds it at,
  so a parent waits until every cloud group nested in it is written and in step in AD, or is planned in the
  same lot (one plan orders its creates children first). A parent whose child is not read yet, out of scope,
  refused, or part of a nesting cycle never becomes ready: the pass after the read plans it with everything,
  as it would have without streaming (a parent planned now would otherwise be written without that member,
  a partial member list in AD).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from writeback.core.model import CloudGroup


def nested_groups(group: CloudGroup) -> frozenset[str]:
    """The ids of the groups nested directly in ``group``."""
    return frozenset(m.id for m in group.members if m.kind == "group")


def decidable(group: CloudGroup) -> bool:
    """Whether ``group``'s scope is known from the group as read (see the module docstring): not a group from
    AD whose source of authority is read after the round, not a Microsoft 365 group that follows the tenant's
    default, not deleted."""
    if group.deleted or group.on_premises_sync_enabled:
        return False
    if group.on_premises_security_identifier:  # from AD once: isCloudManaged is read after the round
        return False
    return not (group.is_unified and group.writeback_enabled is None)


def ready(waiting: Mapping[str, Collection[str]], in_step: Collection[str]) -> list[str]:
    """The waiting groups that may be planned now, children before parents (then by id).

    ``waiting``: group id -> the ids of the groups nested in it; ``in_step``: groups written and in step in AD
    (where a plan finds them). A group is ready when each group nested in it is in step or is itself ready:
    the least such set, so a nesting cycle (or a group nested in itself) never is."""
    done = set(in_step)
    order: list[str] = []
    left = {gid: set(children) - done for gid, children in waiting.items() if gid not in done}
    # Kahn's algorithm over the waiting groups: a group is ready once its last waiting child is.
    parents: dict[str, set[str]] = {}
    for gid, children in left.items():
        for child in children:
            parents.setdefault(child, set()).add(gid)
    free = sorted(gid for gid, children in left.items() if not children)
    while free:
        gid = free.pop(0)
        order.append(gid)
        freed = []
        for parent in parents.get(gid, ()):
            children = left[parent]
            children.discard(gid)
            if not children:
                freed.append(parent)
        if freed:
            free = sorted([*free, *freed])
    return order
