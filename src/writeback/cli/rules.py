"""`writeback rules check|test`: validate a rule, list who matches, explain one user.

A rule that is valid but likely wrong (an unknown property, e.g. ``user.departmnt``) is a warning on stderr,
with the closest known property; the exit code stays 0, as for any valid rule (Entra may know a property this
table does not), so a script that checks exit codes still reads stdout as before and a person sees it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any

from writeback.core.model import CloudUser
from writeback.core.rules import compile_rule
from writeback.core.text import plural, printable


def cloud_user_properties(u: CloudUser) -> dict[str, Any]:
    """A replica user as a Graph-shaped dict, the input of the rule evaluator."""
    return u.graph_properties()


def _load_users(
    args: argparse.Namespace, settings_loader: Callable[[argparse.Namespace], Any]
) -> list[Mapping[str, Any]]:
    from writeback.app import wiring

    settings = settings_loader(args)
    if args.source == "ad":
        directory = wiring.build_directory(settings)
        try:
            users, _usn = directory.read_user_properties(settings.target.base_dn, None)
            return list(users)
        finally:
            directory.close()
    # The cloud replica as the service keeps it: read, not synced here, so this command never takes a Graph
    # delta round from a running service. Only an empty replica is filled, through the reconcile pass's sync.
    from writeback.app.reconcile_pass import ReconcilePass

    engine = wiring.build_engine(settings)
    try:
        if not engine.store.has_synced():
            ReconcilePass(engine).sync()
        cloud = engine.store.snapshot().users.values()
        return [cloud_user_properties(u) for u in cloud if not u.deleted]
    finally:
        engine.close()


def main(args: argparse.Namespace, settings_loader: Callable[[argparse.Namespace], Any] | None) -> int:
    rule = compile_rule(args.rule)
    for warning in rule.warnings:
        print(f"warning: {printable(warning)}", file=sys.stderr)
    if args.rules_cmd == "check":
        props = ", ".join(sorted(rule.properties)) or "-"
        special = f", special rule: {rule.special}" if rule.special else ""
        print(
            f"Rule is valid ({len(args.rule)} of 3072 characters; {rule.kind} rule{special}; properties: {props})"
        )
        return 0
    assert settings_loader is not None
    users = _load_users(args, settings_loader)
    if args.user:
        key = args.user.lower()
        found = [
            u
            for u in users
            if key
            in {
                str(u.get(k) or "").lower()
                for k in ("id", "userPrincipalName", "onPremisesSamAccountName", "displayName", "mail")
            }
        ]
        if not found:
            print(f"No user {printable(repr(args.user))} in the {args.source} source.", file=sys.stderr)
            return 1
        for u in found:
            print(printable(rule.explain(u), lines=True))  # quotes the user's values
        return 0
    matched = rule.filter(users)
    print(f"{len(matched)} of {plural(len(users), 'user')} {'matches' if len(matched) == 1 else 'match'}.")
    for u in sorted(matched, key=lambda x: str(x.get("displayName") or ""))[: args.limit]:
        name = printable(u.get("displayName") or "-")
        upn = printable(u.get("userPrincipalName") or u.get("onPremisesSamAccountName") or "")
        print(f"  {name}  {upn}  [{printable(u.get('id'))}]")
    if len(matched) > args.limit:
        print(f"  … and {len(matched) - args.limit} more (--limit)")
    return 0
