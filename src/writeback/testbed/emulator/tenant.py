"""The emulated tenant: directory objects, group members, soft-deleted items and a change log. No HTTP.

Objects are plain dicts holding Graph's JSON property names verbatim (unknown properties are kept), because
that is what the HTTP layer returns and what the tenant file holds; at 100,000 users and 1,000,000
memberships plain dicts and insertion-ordered member dicts are both the fastest and the smallest choice.
Member ids are canonicalised to the one string object of the member's id, so a million memberships cost
a million references, not a million strings.

Every mutation appends to the change log ``(kind, object id, op, member id, member kind)``; the sequence
number of an entry is ``log_base + index``. Delta rounds (:mod:`.delta`) replay slices of that log.

Soft-deleted objects keep their memberships (hidden from reads, as Graph does) and come back on restore;
a hard delete removes them everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from writeback.errors import ConfigError, RuleError
from writeback.testbed.emulator.apierror import GraphApiError, bad_request, not_found
from writeback.testbed.emulator.rules_hook import (
    RuleCompiler,
    RuleMatcher,
    default_rule_compiler,
    reads_member_of,
)

log = logging.getLogger("writeback.emulator.tenant")

# Graph object kind -> the tenant file's (and Graph's) collection name.
COLLECTIONS: dict[str, str] = {
    "user": "users",
    "group": "groups",
    "device": "devices",
    "servicePrincipal": "servicePrincipals",
    "orgContact": "orgContacts",
}
KIND_BY_COLLECTION = {coll: kind for kind, coll in COLLECTIONS.items()}
# Keys of an object dict that are relationships, not properties: never rendered as properties.
# onPremisesSyncBehavior is a relationship of a group or a user (beta), served by its own route, never as a
# property.
INTERNAL_KEYS = frozenset({"members", "manager", "@odata.type", "onPremisesSyncBehavior"})

# Change log operations.
OP_UPSERT = "upsert"
OP_SOFT_DELETE = "soft"
OP_HARD_DELETE = "hard"
OP_RESTORE = "restore"
OP_MEMBER_ADD = "madd"
OP_MEMBER_REMOVE = "mrem"

LogEntry = tuple[str, str, str, str | None, str | None]


GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_GUID = re.compile(GUID)


def is_guid(value: str) -> bool:
    return _GUID.match(value) is not None


def now_iso() -> str:
    """Graph's timestamp format (UTC, seconds, trailing Z)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_dynamic(group: Mapping[str, Any]) -> bool:
    return "DynamicMembership" in (group.get("groupTypes") or ())


class Tenant:
    """All state of one emulated tenant. Thread-safe through one re-entrant lock (:attr:`lock`).

    Methods raise :class:`~writeback.testbed.emulator.apierror.GraphApiError` for conditions Graph reports (missing
    object, duplicate member); Graph *policy* (read-only group kinds, dynamic groups refusing manual members)
    is the HTTP layer's job, so the admin API can bypass it.
    """

    def __init__(self, tenant_id: str, *, rule_compiler: RuleCompiler | None = None) -> None:
        self.tenant_id = tenant_id
        self.apps: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}  # unknown top-level keys of the tenant file, saved back as they were
        self.live: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in COLLECTIONS}
        self.deleted: dict[str, dict[str, Any]] = {}  # soft-deleted objects by id
        self.kinds: dict[str, str] = {}  # every known object id (live or soft-deleted) -> kind
        self.members: dict[str, dict[str, None]] = {}  # group id -> ordered set of member ids
        self.lock = threading.RLock()
        self.log: list[LogEntry] = []
        self.log_base = 0
        # Sequence number of a property update -> the names it set (delta's Prefer: return=minimal and
        # "set to null" need them); an upsert without an entry (a creation) changed everything.
        self.changed_props: dict[int, frozenset[str]] = {}
        # Readable (non-GUID) ids of purged objects: still well-formed here, so Graph's 404, not its 400.
        self.retired_ids: set[str] = set()
        # Random per load: delta tokens of another process or load are recognised as foreign.
        self.epoch = secrets.token_hex(8)
        # A token minted by a previous run at exactly the sequence that was saved stays valid.
        self.resumable: tuple[str, int] | None = None
        self.versions: dict[str, int] = {}  # cache keys for sorted views (see :meth:`version`)
        self._canon: dict[str, str] = {}
        self._rule_compiler: RuleCompiler | None = rule_compiler
        self._rules: dict[str, tuple[str, RuleMatcher | None]] = {}

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def load(cls, path: Path, *, rule_compiler: RuleCompiler | None = None) -> Tenant:
        """Load a tenant file (YAML or JSON by suffix; YAML with the C loader when available)."""
        try:
            with path.open("rb") as fh:
                if path.suffix.lower() == ".json":
                    data = json.load(fh)
                else:
                    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
                    data = yaml.load(fh, Loader=loader)  # noqa: S506 - a safe loader, C or Python
        except OSError as exc:
            raise ConfigError(f"cannot read tenant file: {exc.strerror}", file=str(path)) from exc
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"tenant file is not valid YAML/JSON: {exc}", file=str(path)) from exc
        return cls.from_dict(data, source=str(path), rule_compiler=rule_compiler)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "<tenant>",
        rule_compiler: RuleCompiler | None = None,
        copy: bool = True,
    ) -> Tenant:
        """Build a tenant from the tenant-file shape. ``copy=False`` adopts the dicts (faster, for big tenants).

        ``rule_compiler=None`` means the default evaluator (:func:`.rules_hook.default_rule_compiler`).
        """
        if not isinstance(data, Mapping) or not data.get("tenant_id"):
            raise ConfigError("a tenant needs a top-level 'tenant_id'", file=source, key="tenant_id")
        compiler = rule_compiler if rule_compiler is not None else default_rule_compiler()
        tenant = cls(str(data["tenant_id"]), rule_compiler=compiler)
        tenant.apps = [dict(app) for app in data.get("apps") or []]
        known = {"tenant_id", "apps", "deletedItems", "deltaState", *COLLECTIONS.values()}
        tenant.extra = {k: v for k, v in data.items() if k not in known}
        pending_members: list[tuple[str, list[Any]]] = []
        for kind, coll in COLLECTIONS.items():
            for index, raw in enumerate(data.get(coll) or []):
                tenant._load_object(kind, raw, False, pending_members, f"{coll}[{index}]", source, copy)
        for index, raw in enumerate(data.get("deletedItems") or []):
            odata_type = str(raw.get("@odata.type") or "")
            kind = odata_type.rsplit(".", 1)[-1] if odata_type else ""
            if kind not in COLLECTIONS:
                raise ConfigError(
                    "needs '@odata.type' like '#microsoft.graph.group'",
                    file=source,
                    key=f"deletedItems[{index}]",
                )
            tenant._load_object(kind, raw, True, pending_members, f"deletedItems[{index}]", source, copy)
        canon = tenant._canon
        for gid, raw_members in pending_members:
            ordered: dict[str, None] = {}
            for member in raw_members:
                member_id = canon.get(str(member))
                if member_id is None:
                    raise ConfigError(
                        f"member {member!r} is not an object of this tenant", file=source, key=f"group {gid}"
                    )
                ordered[member_id] = None
            tenant.members[gid] = ordered
        state = data.get("deltaState")
        if isinstance(state, Mapping) and state.get("epoch") and isinstance(state.get("sequence"), int):
            tenant.log_base = int(state["sequence"])
            tenant.resumable = (str(state["epoch"]), int(state["sequence"]))
        tenant._recompute_all_dynamic(log_changes=False)
        return tenant

    def _load_object(
        self,
        kind: str,
        raw: Any,
        soft_deleted: bool,
        pending_members: list[tuple[str, list[Any]]],
        where: str,
        source: str,
        copy: bool,
    ) -> None:
        if not isinstance(raw, dict) or not raw.get("id"):
            raise ConfigError("every object needs an 'id'", file=source, key=where)
        obj = dict(raw) if copy else raw
        object_id = str(obj["id"])
        if object_id in self._canon:
            raise ConfigError(f"duplicate object id {object_id}", file=source, key=where)
        obj["id"] = object_id
        obj.pop("@odata.type", None)
        self._canon[object_id] = object_id
        self.kinds[object_id] = kind
        if kind == "group":
            raw_members = obj.pop("members", None) or []
            if not isinstance(raw_members, list):
                raise ConfigError("'members' must be a list of object ids", file=source, key=where)
            pending_members.append((object_id, raw_members))
        if soft_deleted:
            self.deleted[object_id] = obj
        else:
            self.live[kind][object_id] = obj

    def to_dict(self) -> dict[str, Any]:
        """The tenant-file shape, plus soft-deleted objects under ``deletedItems`` and the delta position."""
        with self.lock:
            out: dict[str, Any] = {"tenant_id": self.tenant_id, "apps": [dict(a) for a in self.apps]}
            for kind, coll in COLLECTIONS.items():
                objects = []
                for obj in self.live[kind].values():
                    item = dict(obj)
                    if kind == "group":
                        item["members"] = list(self.members.get(obj["id"], ()))
                    objects.append(item)
                out[coll] = objects
            deleted = []
            for object_id, obj in self.deleted.items():
                kind = self.kinds[object_id]
                item = {"@odata.type": f"#microsoft.graph.{kind}", **obj}
                if kind == "group":
                    item["members"] = list(self.members.get(object_id, ()))
                deleted.append(item)
            out["deletedItems"] = deleted
            out["deltaState"] = {"epoch": self.epoch, "sequence": self.sequence}
            out.update(self.extra)
            return out

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename); JSON for ``.json``, YAML otherwise."""
        data = self.to_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                if path.suffix.lower() == ".json":
                    json.dump(data, fh)
                else:
                    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
                    yaml.dump(data, fh, Dumper=dumper, sort_keys=False, allow_unicode=True)
            os.chmod(tmp, 0o600)  # the file holds app secrets
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ queries

    @property
    def sequence(self) -> int:
        """The sequence number the next change will get (= number of changes so far, plus the base)."""
        return self.log_base + len(self.log)

    def changes_since(self, seq: int) -> list[LogEntry]:
        with self.lock:
            return self.log[max(seq - self.log_base, 0) :]

    def version(self, key: str) -> int:
        """A counter that moves whenever the set behind ``key`` changes ('kind:user', 'members:<gid>')."""
        return self.versions.get(key, 0)

    def _bump(self, key: str) -> None:
        self.versions[key] = self.versions.get(key, 0) + 1

    def kind_of(self, object_id: str) -> str | None:
        return self.kinds.get(object_id)

    def is_live(self, object_id: str) -> bool:
        return object_id in self.kinds and object_id not in self.deleted

    def get_live(self, object_id: str, kind: str | None = None) -> dict[str, Any]:
        """The live object, or Graph's 404."""
        found = self.kinds.get(object_id)
        if found is None or object_id in self.deleted or (kind is not None and found != kind):
            raise not_found(object_id)
        return self.live[found][object_id]

    def find_user(self, id_or_upn: str) -> dict[str, Any]:
        """A live user by id or userPrincipalName (Graph accepts both in ``/users/{id}``)."""
        if self.kinds.get(id_or_upn) == "user" and id_or_upn not in self.deleted:
            return self.live["user"][id_or_upn]
        if "@" in id_or_upn:
            wanted = id_or_upn.lower()
            for user in self.live["user"].values():
                if str(user.get("userPrincipalName") or "").lower() == wanted:
                    return user
        raise not_found(id_or_upn)

    def get_deleted(self, object_id: str) -> dict[str, Any]:
        obj = self.deleted.get(object_id)
        if obj is None:
            raise not_found(object_id)
        return obj

    def visible_members(self, group_id: str) -> list[str]:
        """Direct members that are not soft-deleted, in insertion order."""
        deleted = self.deleted
        return [m for m in self.members.get(group_id, ()) if m not in deleted]

    def transitive_members(self, group_id: str) -> list[str]:
        """Members of the group and of its nested groups (each once, the group itself excluded)."""
        seen: dict[str, None] = {}
        stack = [group_id]
        visited_groups = {group_id}
        while stack:
            for member in self.visible_members(stack.pop()):
                if member != group_id and member not in seen:
                    seen[member] = None
                if self.kinds.get(member) == "group" and member not in visited_groups:
                    visited_groups.add(member)
                    stack.append(member)
        return list(seen)

    def member_of(self, object_id: str) -> list[str]:
        """Live groups that have ``object_id`` as a direct member (a scan: rare call, no reverse index)."""
        return [gid for gid in self.live["group"] if object_id in self.members.get(gid, ())]

    # ------------------------------------------------------------------ mutations

    def _append(
        self, kind: str, object_id: str, op: str, member: str | None = None, mkind: str | None = None
    ) -> None:
        self.log.append((kind, object_id, op, member, mkind))

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def add_object(self, kind: str, obj: dict[str, Any], members: Iterable[str] = ()) -> dict[str, Any]:
        """Create a live object (``obj['id']`` generated when absent); ``members`` for groups."""
        with self.lock:
            object_id = str(obj.get("id") or self.new_id())
            if object_id in self.kinds:
                raise bad_request(
                    f"Another object with the same value for property id already exists: {object_id}"
                )
            obj["id"] = object_id
            self._canon[object_id] = object_id
            self.kinds[object_id] = kind
            self.live[kind][object_id] = obj
            self._bump(f"kind:{kind}")
            self._append(kind, object_id, OP_UPSERT)
            if kind == "group":
                self.members[object_id] = {}
                for member in members:
                    self.add_member(object_id, member)
                self._recompute_dynamic(object_id)
            elif kind == "user":
                self._reevaluate_user(object_id)
            return obj

    def update_object(self, object_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Set properties (``None`` stores null, as Graph does) and record the change."""
        with self.lock:
            obj = self.get_live(object_id)
            kind = self.kinds[object_id]
            old_rule_state = (
                obj.get("membershipRule"),
                obj.get("membershipRuleProcessingState"),
                is_dynamic(obj),
            )
            for key, value in changes.items():
                if key != "id":
                    obj[key] = value
            self.changed_props[self.sequence] = frozenset(k for k in changes if k != "id")
            self._append(kind, object_id, OP_UPSERT)
            if kind == "user":
                self._reevaluate_user(object_id)
            elif kind == "group":
                new_rule_state = (
                    obj.get("membershipRule"),
                    obj.get("membershipRuleProcessingState"),
                    is_dynamic(obj),
                )
                if new_rule_state != old_rule_state:
                    self._recompute_dynamic(object_id)
            return obj

    def soft_delete(self, object_id: str) -> None:
        """Move a live object to deleted items; its memberships stay (hidden) until a hard delete."""
        with self.lock:
            obj = self.get_live(object_id)
            kind = self.kinds[object_id]
            del self.live[kind][object_id]
            obj["deletedDateTime"] = now_iso()
            self.deleted[object_id] = obj
            self._bump(f"kind:{kind}")
            self._append(kind, object_id, OP_SOFT_DELETE)
            if kind == "group":
                self._rules.pop(object_id, None)

    def restore(self, object_id: str) -> dict[str, Any]:
        """Bring a soft-deleted object back, with its memberships (delta reports them as added again)."""
        with self.lock:
            obj = self.get_deleted(object_id)
            kind = self.kinds[object_id]
            if kind == "user":
                upn = str(obj.get("userPrincipalName") or "").lower()
                if upn and any(
                    str(u.get("userPrincipalName") or "").lower() == upn for u in self.live["user"].values()
                ):
                    raise bad_request(
                        "Another object with the same value for property userPrincipalName already exists."
                    )
            del self.deleted[object_id]
            obj["deletedDateTime"] = None
            self.live[kind][object_id] = obj
            self._bump(f"kind:{kind}")
            self._append(kind, object_id, OP_RESTORE)
            # Memberships were hidden while deleted: the groups see the member come back.
            for gid in self.member_of(object_id):
                self._append("group", gid, OP_MEMBER_ADD, object_id, kind)
                self._bump(f"members:{gid}")
            if kind == "user":
                self._reevaluate_user(object_id)
            elif kind == "group":
                self._recompute_dynamic(object_id)
            return obj

    def hard_delete(self, object_id: str) -> None:
        """Delete for good (from deleted items, or straight from live for the admin API)."""
        with self.lock:
            kind = self.kinds.get(object_id)
            if kind is None:
                raise not_found(object_id)
            if object_id in self.deleted:
                del self.deleted[object_id]
            else:
                del self.live[kind][object_id]
                self._bump(f"kind:{kind}")
            # Every group that still holds it (live or soft-deleted, the member itself live or not)
            # loses it now; delta reports the removal even where a soft delete had only hidden it.
            for gid in [gid for gid, members in self.members.items() if object_id in members]:
                del self.members[gid][object_id]
                self._bump(f"members:{gid}")
                self._append("group", gid, OP_MEMBER_REMOVE, object_id, kind)
            del self.kinds[object_id]
            del self._canon[object_id]
            if not _GUID.match(object_id):
                self.retired_ids.add(object_id)
            self.members.pop(object_id, None)
            self._rules.pop(object_id, None)
            self._append(kind, object_id, OP_HARD_DELETE)

    def add_member(self, group_id: str, member_id: str) -> None:
        """Add a direct member; Graph's 404 for unknown objects, 400 for an existing reference."""
        with self.lock:
            self.get_live(group_id, "group")
            member_kind = self.kinds.get(member_id)
            if member_kind is None or member_id in self.deleted:
                raise not_found(member_id)
            if member_id == group_id:
                raise bad_request("A group cannot be a member of itself.")
            members = self.members.setdefault(group_id, {})
            if member_id in members:
                raise bad_request(
                    "One or more added object references already exist for the following modified "
                    "properties: 'members'."
                )
            members[self._canon[member_id]] = None
            self._bump(f"members:{group_id}")
            self._append("group", group_id, OP_MEMBER_ADD, self._canon[member_id], member_kind)
            self._recompute_member_of_rules(group_id)

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self.lock:
            self.get_live(group_id, "group")
            members = self.members.get(group_id, {})
            if member_id not in members or member_id in self.deleted:
                raise GraphApiError(
                    404,
                    "Request_ResourceNotFound",
                    "One or more removed object references do not exist for the following modified "
                    "properties: 'members'.",
                )
            del members[member_id]
            self._bump(f"members:{group_id}")
            self._append("group", group_id, OP_MEMBER_REMOVE, member_id, self.kinds.get(member_id))
            self._recompute_member_of_rules(group_id)

    # ------------------------------------------------------------------ dynamic membership

    def set_rule_compiler(self, compiler: RuleCompiler | None) -> None:
        """Swap the rule evaluator (tests, or the lead's wiring) and recompute every dynamic group."""
        with self.lock:
            self._rule_compiler = compiler
            self._rules.clear()
            self._recompute_all_dynamic(log_changes=True)

    def _matcher(self, group: Mapping[str, Any]) -> RuleMatcher | None:
        """The compiled rule of an active dynamic group, or None (static, paused, no evaluator, bad rule)."""
        if self._rule_compiler is None or not is_dynamic(group):
            return None
        if str(group.get("membershipRuleProcessingState") or "On").lower() == "paused":
            return None
        rule = str(group.get("membershipRule") or "")
        cached = self._rules.get(group["id"])
        if cached is not None and cached[0] == rule:
            return cached[1]
        matcher: RuleMatcher | None
        try:
            matcher = self._rule_compiler(rule) if rule else None
        except RuleError as exc:
            log.warning("dynamic group %s: rule not evaluated: %s", group["id"], exc)
            matcher = None
        self._rules[group["id"]] = (rule, matcher)
        return matcher

    def check_rule(self, rule: str) -> None:
        """Raise Graph's 400 when the evaluator rejects ``rule`` (no evaluator: accepted unchecked)."""
        if self._rule_compiler is None:
            return
        try:
            self._rule_compiler(rule)
        except RuleError as exc:
            raise bad_request(f"Invalid membershipRule: {exc}") from exc

    @staticmethod
    def _safe_match(
        matcher: RuleMatcher, user: Mapping[str, Any], groups: Iterable[str] | None = None
    ) -> bool:
        """The rule's verdict on ``user``; ``groups`` (its direct groups) are passed to memberOf rules."""
        if groups is not None and reads_member_of(matcher):
            user = {**user, "memberOf": list(groups)}
        try:
            return bool(matcher(user))
        except RuleError:
            return False

    def _direct_groups_of_users(self) -> dict[str, list[str]]:
        """User id -> live groups it is a direct member of (one pass over all memberships)."""
        index: dict[str, list[str]] = {}
        for gid in self.live["group"]:
            for member in self.members.get(gid, ()):
                index.setdefault(member, []).append(gid)
        return index

    def _recompute_member_of_rules(self, changed_group: str) -> None:
        """After ``changed_group``'s members changed: re-evaluate the dynamic groups with memberOf rules."""
        # The compiled-rule cache holds every active dynamic group (all are compiled when loaded, created or
        # changed), so this costs nothing per change when no memberOf rule exists; scanning every group here
        # made 10,000 member changes in a 10,000-group tenant take minutes.
        for gid, (_rule, matcher) in list(self._rules.items()):
            if (
                gid != changed_group
                and matcher is not None
                and reads_member_of(matcher)
                and gid in self.live["group"]
            ):
                self._recompute_dynamic(gid)

    def _recompute_dynamic(self, group_id: str, *, log_changes: bool = True) -> None:
        """Make a dynamic group's members equal to the users its rule matches (no-op when paused)."""
        group = self.live["group"].get(group_id)
        if group is None:
            return
        matcher = self._matcher(group)
        if matcher is None:
            return
        current = self.members.setdefault(group_id, {})
        groups_of = self._direct_groups_of_users() if reads_member_of(matcher) else {}
        wanted = {
            uid
            for uid, user in self.live["user"].items()
            if self._safe_match(matcher, user, groups_of.get(uid, ()))
        }
        # Memberships held by soft-deleted users are left alone: they come back on restore.
        for member in [m for m in current if m not in wanted and m not in self.deleted]:
            del current[member]
            if log_changes:
                self._append("group", group_id, OP_MEMBER_REMOVE, member, self.kinds.get(member))
        for uid in wanted:
            if uid not in current:
                current[uid] = None
                if log_changes:
                    self._append("group", group_id, OP_MEMBER_ADD, uid, "user")
        self._bump(f"members:{group_id}")

    def _recompute_all_dynamic(self, *, log_changes: bool) -> None:
        for gid, group in self.live["group"].items():
            if is_dynamic(group):
                self._recompute_dynamic(gid, log_changes=log_changes)

    def _reevaluate_user(self, user_id: str) -> None:
        """After a user changed: join or leave the dynamic groups whose rule now (no longer) matches."""
        if self._rule_compiler is None:
            return
        user = self.live["user"].get(user_id)
        if user is None:
            return
        for gid, group in self.live["group"].items():
            matcher = self._matcher(group) if is_dynamic(group) else None
            if matcher is None:
                continue
            members = self.members.setdefault(gid, {})
            matches = self._safe_match(
                matcher, user, self.member_of(user_id) if reads_member_of(matcher) else None
            )
            if matches and user_id not in members:
                members[self._canon[user_id]] = None
                self._bump(f"members:{gid}")
                self._append("group", gid, OP_MEMBER_ADD, self._canon[user_id], "user")
            elif not matches and user_id in members:
                del members[user_id]
                self._bump(f"members:{gid}")
                self._append("group", gid, OP_MEMBER_REMOVE, user_id, "user")

    # ------------------------------------------------------------------ misc

    def iter_live(self, kind: str) -> Iterator[dict[str, Any]]:
        return iter(self.live[kind].values())

    def counts(self) -> dict[str, int]:
        with self.lock:
            out = {COLLECTIONS[k]: len(v) for k, v in self.live.items()}
            out["deletedItems"] = len(self.deleted)
            out["memberships"] = sum(len(m) for m in self.members.values())
            out["changes"] = len(self.log)
            return out

    def app(self, client_id: str) -> dict[str, Any] | None:
        return next((a for a in self.apps if str(a.get("client_id")) == client_id), None)

    def snapshot_ids(self, kind: str) -> list[str]:
        with self.lock:
            return list(self.live[kind])
