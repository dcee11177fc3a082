"""The `writeback` command: parse, call one library function, print, map errors to exit codes.

Exit codes (also in ``--help``): 0 success (for `plan`: no changes), 1 error, 2 `plan` found changes pending,
3 changes are held over a safety threshold (`plan` and `apply`: `apply` applied the rest; allow them with
--allow-deletes/--allow-removals/--allow-updates), 64 usage error (EX_USAGE from sysexits.h; argparse's own 2
would read as "changes pending"; also an unusable option value, such as an unreadable `apply --plan FILE` or
`log --since yesterday`: nothing was done), 130 interrupted.
Global options (--config, --verbose-log, --quiet) work before or after the subcommand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from writeback import __version__
from writeback.app.logquery import LOG_ACTIONS, LOG_RESULTS
from writeback.core.text import printable
from writeback.errors import ConfigError, WritebackError

DEFAULT_SANDBOX_DIR = "/var/tmp/writeback-sandbox"
EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_HELD, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 3, 64, 130
EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK:<4} success (plan: nothing to change)
  {EXIT_ERROR:<4} error (the message says what failed and how to fix it)
  {EXIT_CHANGES:<4} plan: changes are pending
  {EXIT_HELD:<4} plan, apply, provision: changes are held over a safety threshold (apply wrote the rest;
       allow them with --allow-deletes/-removals/-updates or `writeback allow`)
  {EXIT_USAGE:<4} usage error: unknown option, missing or unusable argument (EX_USAGE), such as an
       unreadable `apply --plan FILE` or `log --since yesterday`; nothing was done
  {EXIT_INTERRUPTED:<4} interrupted (Ctrl-C)"""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors exiting EX_USAGE (64): argparse's default 2 means "changes pending" here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommands whose unrecognized arguments are refused by the subcommand's own parser.

    argparse hands them back to the top-level parser, which would print the top-level usage for
    `writeback log --bogus`; the administrator needs `usage: writeback log ...`."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        super().__call__(parser, namespace, values, option_string)
        extra = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, None)
        if extra:
            self._name_parser_map[values[0]].error(f"unrecognized arguments: {' '.join(extra)}")


class UsageError(Exception):
    """A command line that parses but cannot be used (e.g. `apply --plan FILE` where FILE is no saved plan):
    exit 64 with the subcommand's usage, before anything was done."""


def _sandbox_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir or os.environ.get("WRITEBACK_SANDBOX_DIR") or DEFAULT_SANDBOX_DIR)


def _config_path(args: argparse.Namespace) -> Path:
    if args.config:
        return Path(args.config)
    if os.environ.get("WRITEBACK_CONFIG"):
        return Path(os.environ["WRITEBACK_CONFIG"])
    local = Path("writeback.toml")
    if local.exists():
        return local
    sandbox = Path(os.environ.get("WRITEBACK_SANDBOX_DIR") or DEFAULT_SANDBOX_DIR) / "writeback.toml"
    if sandbox.exists():
        return sandbox
    raise ConfigError(
        "no configuration: pass --config FILE, set WRITEBACK_CONFIG, create ./writeback.toml, "
        "or run `writeback sandbox up` for a ready sandbox config"
    )


def _progress(args: argparse.Namespace) -> Any:
    if getattr(args, "quiet", False):
        return None
    return lambda msg: print(printable(msg, lines=True), file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Any:
    from writeback.config import load_settings

    return load_settings(_config_path(args))


def cmd_plan(args: argparse.Namespace) -> int:
    from writeback.app import operations
    from writeback.cli.report import render_plan

    plan = operations.plan(
        _settings(args), _progress(args), sync=not args.no_sync, allow=_allowances(args), deep=args.deep
    )
    if args.out:
        from writeback.adapters.state.files import write_private

        try:
            write_private(args.out, json.dumps(plan.to_dict(), indent=2))  # it names groups and members
        except OSError as exc:
            raise ConfigError(f"cannot save the plan: {exc.strerror}", file=args.out) from exc
        print(f"Plan saved to {args.out} (digest {plan.digest()[:12]})", file=sys.stderr)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else render_plan(plan, verbose=args.verbose))
    # Held changes first: "nothing to do" must never be read from a plan whose changes wait for an operator.
    return EXIT_HELD if plan.held else EXIT_CHANGES if plan.has_changes else EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from writeback.app import operations
    from writeback.cli.report import render_plan
    from writeback.core.text import plural

    saved = _saved_plan(args.plan) if args.plan else None  # checked before any sync or lock
    show = None if args.json else (lambda p: print(render_plan(p, verbose=args.verbose)))
    plan, result = operations.apply(
        _settings(args), _progress(args), saved=saved, allow=_allowances(args), show=show, deep=args.deep
    )
    failed = result.failed
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "ok": result.ok,
                    "aborted": result.aborted,
                    "applied": sum(1 for r in result.results if r.ok),
                    "failed": len(failed),
                    "results": [
                        {
                            "kind": r.change.kind.value,
                            "cloud_id": r.change.cloud_id,
                            "dn": r.change.dn,
                            "ok": r.ok,
                            "error": r.error,
                        }
                        for r in result.results
                    ],
                    "plan": plan.to_dict(),
                },
                indent=2,
            )
        )
    else:
        print(
            f"\nApplied {len(result.results) - len(failed)} of {plural(len(plan.changes), 'change')} "
            f"(run {result.run_id})."
        )
        for r in failed:
            name = printable(r.change.display_name or r.change.dn)
            print(f"  FAILED {r.change.kind.value} {name}: {printable(r.error)}")
        if result.aborted:
            print(
                f"Stopped early: {printable(result.aborted)}. Run `writeback apply` again once it is fixed; "
                "it resumes."
            )
        if plan.held:
            print(
                f"Held back by a safety threshold: {plural(len(plan.held), 'change')} (see the warnings above)."
            )
    if not result.ok:
        return EXIT_ERROR
    return EXIT_HELD if plan.held else EXIT_OK


def _saved_plan(path: str) -> dict[str, Any]:
    """The JSON of a plan saved with `plan --out`, checked to be one (UsageError, exit 64, if not)."""
    from writeback.core.planning import Plan

    how = "save one with `writeback plan --out FILE`, or run `writeback apply` without --plan"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"argument --plan: cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:  # not UTF-8 or not JSON
        raise UsageError(f"argument --plan: {path} is not a saved plan (not JSON: {exc}); {how}") from exc
    try:
        Plan.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UsageError(f"argument --plan: {path} is not a saved plan ({problem}); {how}") from exc
    return dict(data)


def _allowances(args: argparse.Namespace) -> Any:
    from writeback.app.engine import Allowances

    return Allowances(args.allow_deletes, args.allow_removals, args.allow_updates)


def cmd_allow(args: argparse.Namespace) -> int:
    from writeback.app import operations
    from writeback.app.engine import Allowances
    from writeback.core.text import plural

    allow = Allowances(args.deletes, args.removals, args.updates)
    operations.allow(_settings(args), allow)
    print(
        "Allowed for the next reconcile of the running service (a deep one): "
        f"{plural(allow.deletes, 'delete')}, {plural(allow.removals, 'member removal')}, "
        f"{plural(allow.updates, 'update')}."
    )
    return EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    from writeback.app import operations

    pause, started = operations.pause(_settings(args))
    if started:
        print(
            f"Paused: writeback keeps reading the cloud and writes nothing to AD ({printable(pause.describe())}). "
            "A running service stops writing before its next pass; `writeback resume` ends the pause."
        )
    else:
        print(f"Already {printable(pause.describe())}; `writeback resume` ends the pause.")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    from writeback.app import operations

    ended = operations.resume(_settings(args))
    if ended is None:
        print("Not paused: nothing to resume.")
    else:
        print(
            f"Resumed (it was {printable(ended.describe())}). A running service writes again from its next cycle, "
            "a reconcile of what changed while paused."
        )
    return EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    """`state rebuild-replica`: forget the cloud replica and read it again from Graph; the log stays.
    `state migrate --to URL`: copy this SQLite state into a new PostgreSQL database."""
    import uuid

    from writeback.app.wiring import build_graph, build_store, writer_claim
    from writeback.core.text import plural

    settings = _settings(args)
    if args.state_cmd == "migrate":
        return _state_migrate(settings, args.to)
    if not settings.scope.cloud_enabled:
        print('scope.mode is "none": there is no cloud replica to rebuild.')
        return EXIT_OK
    progress = _progress(args) or (lambda _msg: None)
    with writer_claim(settings, "state rebuild-replica"):
        store = build_store(settings)
        client = None
        try:
            client, source = build_graph(settings)  # before forgetting anything: a bad [source] fails here
            run_id = uuid.uuid4().hex[:12]
            store.reset_replica()
            progress("Cloud replica cleared; reading every user and group from Microsoft Graph")
            report = source.sync(store)
            store.log(
                run_id,
                "rebuild_replica",
                "info",
                detail={"graph_requests": report.requests, "groups": len(report.changed_groups)},
            )
        finally:
            if client is not None:
                client.close()
            store.close()
    print(
        f"Cloud replica of {store.where} rebuilt from Microsoft Graph ({plural(report.requests, 'request')}; "
        f"run {run_id}). The provisioning log and last-applied state were kept; "
        "`writeback plan` shows what a reconcile would change."
    )
    return EXIT_OK


def _state_migrate(settings: Any, to: str) -> int:
    from writeback.adapters.state.copy import copy_state
    from writeback.adapters.state.lock import WriterLock
    from writeback.adapters.state.postgres import PostgresStore, redact
    from writeback.adapters.state.sqlite import SqliteStore
    from writeback.config import postgres_url_problem
    from writeback.core.text import plural

    if problem := postgres_url_problem(to):
        raise ConfigError(f"--to {redact(to) if to.startswith('postgres') else 'URL'}: {problem}")
    if settings.state.url:
        raise ConfigError(
            "[state] url is already set: this configuration uses PostgreSQL; `state migrate` copies the "
            "SQLite state of [state] path, so remove [state] url while migrating",
            file=settings.path,
            key="state.url",
        )
    with WriterLock(settings.state.path, "state migrate"):
        source = SqliteStore(settings.state.path)
        try:
            target = PostgresStore(to)
            try:
                counts = copy_state(source, target)
            finally:
                target.close()
        finally:
            source.close()
    print(f"Copied the state of {settings.state.path} to {redact(to)}:")
    for table, n in counts.items():
        print(f"  {table:<13} {plural(n, 'row')}")
    print(
        "Next: set [state] url to that URL (the password in [state] password_env or password_file), then "
        "start `writeback run` on each server (docs/ha.md). The SQLite file is left as it was."
    )
    return EXIT_OK


def _group_kind(group_type: int) -> str:
    """'universal security', 'universal distribution', ... from an AD groupType."""
    scope = next(
        (n for bit, n in ((8, "universal"), (2, "global"), (4, "domain local")) if group_type & bit), "?"
    )
    return f"{scope} {'security' if group_type < 0 else 'distribution'}"


def cmd_show(args: argparse.Namespace) -> int:
    from writeback.app.wiring import build_directory
    from writeback.core.dn import rdn
    from writeback.core.mapping import MSDS_ANCHOR, read_anchor_attributes
    from writeback.core.text import plural

    directory = build_directory(_settings(args))
    try:
        anchors = read_anchor_attributes(directory.has_attribute(MSDS_ANCHOR))
        groups = sorted(
            directory.read_managed_groups(anchors, (*anchors, "displayName", "description", "mail")),
            key=lambda g: g.dn.lower(),
        )
    finally:
        directory.close()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "dn": g.dn,
                        "objectGUID": g.object_guid,
                        "anchor": g.anchor,
                        "sAMAccountName": g.sam_account_name,
                        "groupType": g.group_type,
                        "mail": g.attributes.get("mail"),
                        "members": sorted(g.members),
                    }
                    for g in groups
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not groups:
        print("No groups managed by writeback in AD.")
    for g in groups:  # every value read from AD is shown with its control characters escaped
        mail = f"  mail={printable(g.attributes['mail'])}" if g.attributes.get("mail") else ""
        print(
            f"{printable(g.dn)}\n    {_group_kind(g.group_type)}  sAMAccountName={printable(g.sam_account_name)}"
            f"  anchor={printable(g.anchor)}{mail}  {plural(len(g.members), 'member')}"
        )
        for m in sorted(g.members, key=str.lower):
            print(f"      - {printable(rdn(m)[3:])}")
    return EXIT_OK


def _since(text: str) -> float | None:
    """--since (see writeback.app.logquery.parse_since); an unusable value is a usage error (exit 64)."""
    from writeback.app.logquery import parse_since

    try:
        return parse_since(text, "")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_log(args: argparse.Namespace) -> int:
    from writeback.app.logquery import iso_time
    from writeback.app.wiring import build_store
    from writeback.cli.report import render_table

    settings = _settings(args)
    store = build_store(settings)
    try:
        entries = store.read_log(
            group=args.group,
            action=args.action,
            result=args.result,
            run_id=args.run,
            limit=args.limit,
            since=args.since,
        )
    finally:
        store.close()
    if args.json:
        rows = [{**e.to_dict(), "time": iso_time(e.time)} for e in entries]
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    table = []
    for e in entries:
        info = e.error or ""
        if not info and e.detail:
            info = ", ".join(f"{k}={v}" for k, v in e.detail.items())
        group = e.group_name or e.cloud_id or ""
        table.append([iso_time(e.time), e.run_id, e.action, e.result, group, e.actor or "", info[:120]])
    print(
        render_table(table, ["time (UTC)", "run", "action", "result", "group", "by", "detail"])
        if table
        else "No log entries."
    )
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    from writeback.app.checks import check_config
    from writeback.core.text import plural

    problems = check_config(_settings(args), lambda msg: print(printable(msg, lines=True)))
    if problems:
        print(f"\n{plural(len(problems), 'problem')} found:")
        for p in problems:
            print(f"  - {printable(p, lines=True)}")
        return EXIT_ERROR
    print("\nConfiguration OK.")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    from writeback.testbed import sandbox

    directory = _sandbox_dir(args)
    if args.sandbox_cmd == "up":
        info = sandbox.sandbox_up(
            directory,
            users=args.users,
            progress=_progress(args),
            postgres=args.postgres,
            exchange_schema=args.exchange_schema,
            kerberos=args.kerberos,
        )
        _print_sandbox(info, directory)
        if args.kerberos and info.kerberos_config:
            print(
                f"Kerberos: KRB5_CONFIG={info.krb5_conf} writeback --config {info.kerberos_config} plan   "
                "(no password: the service account's keytab, signed and sealed on port 389)"
            )
        print("Next: writeback plan   (or: writeback --config " + str(info.config) + " plan)")
    elif args.sandbox_cmd == "reset":
        report = sandbox.sandbox_reset(directory)
        print(f"Sandbox in {directory} reset in {report.seconds:.1f} s, as `writeback sandbox up` made it:")
        for line in report.steps:
            print(f"  - {printable(line)}")
        _print_sandbox(report.info, directory)
        print("Next: writeback plan   (stop it with: writeback sandbox down)")
    elif args.sandbox_cmd == "down":
        sandbox.sandbox_down(directory)
        print(f"Sandbox in {directory} stopped (files kept).")
    else:
        status = sandbox.sandbox_status(directory)
        print(status if isinstance(status, str) else json.dumps(_public(status), indent=2, default=str))
    return EXIT_OK


def _print_sandbox(info: Any, directory: Path) -> None:
    from writeback.testbed import sandbox

    print(f"  DC:        {info.ldap_url}  (base {info.base_dn})")
    first, *more = sandbox.users_explained(info.users)
    print(f"  Users:     {first}")
    for line in more:
        print(f"             {line}")
    if info.postgres_url:
        print(
            f"  Postgres:  postgres_url in sandbox.json (TLS, loopback), its password in {info.postgres_password_file}"
        )
        for config in info.ha_configs:
            print(
                f"  HA:        writeback --config {config} run   (two instances, one PostgreSQL: docs/ha.md)"
            )
    if info.graph_url:
        print(f"  Graph:     {info.graph_url}  (tenant {info.tenant_id})")
    else:
        print("  Graph:     the emulator is not running; see the logs in " + str(directory / "logs"))
    print(f"  Config:    {info.config}")
    if info.console_url:
        token_file = info.dir / "secrets" / "console_token"
        print(f"  Console:   {info.console_url}  (served by `writeback run`; operator token in {token_file})")
    print(f"  Contract:  {directory / 'sandbox.json'}")


def _public(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    data = asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else dict(vars(obj))
    return {k: ("***" if "password" in k or "secret" in k else v) for k, v in data.items()}


def cmd_emulator(args: argparse.Namespace) -> int:
    from writeback.testbed.emulator import server

    argv = ["serve", "--tenant", args.tenant, "--port", str(args.port), "--host", args.host]
    if args.data_dir:  # else the emulator makes a private temporary one and prints where it is
        argv += ["--data-dir", args.data_dir]
    result = server.main(argv)
    return int(result or 0)


def cmd_run(args: argparse.Namespace) -> int:
    from writeback.app.service import run_service

    settings = _settings(args)
    attach = []
    if settings.service.listen:
        from writeback.console.server import start

        attach.append(start)
    return run_service(settings, once=args.once, verbose=args.verbose_log, attach=attach)


def cmd_provision(args: argparse.Namespace) -> int:
    """Provision one cloud group now, step by step: one pass holding the writer claim, or through the running
    service's console API when a `writeback run` holds it (the service stays AD's only writer; a standby
    says which instance is active)."""
    from writeback.app import operations
    from writeback.errors import StateLockedError

    settings = _settings(args)
    steps: list[dict[str, Any]] = []

    def emit(step: dict[str, Any]) -> None:
        steps.append(step)
        if not args.json:
            kind, status, what = (printable(step[k]) for k in ("type", "status", "description"))
            print(f"{kind:<10} {status:<8} {what}", flush=True)

    try:
        outcome = operations.provision(settings, args.group, emit)
        result, summary, run_id = outcome.result, outcome.summary, outcome.run_id
    except StateLockedError as exc:
        if not settings.service.listen:
            raise StateLockedError(
                f"{exc}; with service.listen set, `writeback provision` asks it instead"
            ) from exc
        result, summary, run_id = _provision_via_service(settings, args.group, emit)
    if args.json:
        print(
            json.dumps(
                {
                    "group": args.group,
                    "result": result,
                    "ok": result != "failure",
                    "summary": summary,
                    "run_id": run_id,
                    "steps": steps,
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(printable(summary) + (f" (log: writeback log --run {printable(run_id)})" if run_id else ""))
    if result == "failure":
        return EXIT_ERROR
    return EXIT_HELD if result == "held" else EXIT_OK


def _provision_via_service(settings: Any, group: str, emit: Any) -> tuple[str, str, str | None]:
    import httpx

    from writeback.errors import StateLockedError

    token = os.environ.get("WRITEBACK_CONSOLE_TOKEN")
    if not token:
        raise ConfigError(
            "a running service holds the state: set WRITEBACK_CONSOLE_TOKEN to an operator token of its "
            "console so `writeback provision` can ask it"
        )
    scheme = "https" if settings.console.certificate_file else "http"
    base = f"{scheme}://{settings.service.listen}"
    verify: Any = settings.console.certificate_file or True  # a self-signed console certificate: trust it
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, headers=headers, verify=verify, timeout=30) as client:
            r = client.post("/api/provision", json={"group": group})
            if r.status_code >= 400:
                try:
                    error = r.json().get("error")
                except ValueError:
                    error = None
                # The console's errors are Graph-shaped: {"error": {"code", "message", "innerError"}}.
                why = str(error.get("message") if isinstance(error, dict) else error or r.text[:200])
                if r.status_code == 409:  # a standby: it names the active instance
                    raise StateLockedError(f"the service at {base} cannot provision: {why}")
                raise ConfigError(f"the console at {base} refused: HTTP {r.status_code} {why}")
            run_id, seen = r.json()["id"], 0
            while True:
                run = client.get(f"/api/provision/{run_id}").json()
                for step in run["steps"][seen:]:
                    emit(step)
                seen = len(run["steps"])
                if run["done"]:
                    result = run.get("result") or ("success" if run["ok"] else "failure")
                    return str(result), str(run.get("summary") or result), run.get("run_id")
                time.sleep(0.5)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach the service's console at {base}: {type(exc).__name__}") from exc


def cmd_rules(args: argparse.Namespace) -> int:
    from writeback.cli import rules as rules_cli

    return rules_cli.main(args, _settings if args.rules_cmd == "test" else None)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="writeback",
        description="Write Microsoft Entra ID cloud groups back into Active Directory.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"writeback {__version__}")
    _add_global_options(p, default=None)
    sub = p.add_subparsers(
        dest="command", required=True, action=_Subcommands, title="commands", metavar="COMMAND"
    )

    sp = sub.add_parser(
        "plan", help="show what apply would change (never writes); exit 2 when changes are pending"
    )
    sp.add_argument("--json", action="store_true", help="machine-readable plan")
    sp.add_argument("--out", help="save the plan to FILE (apply it later with `apply --plan FILE`)")
    sp.add_argument("--verbose", action="store_true", help="list every member value")
    sp.add_argument("--no-sync", action="store_true", help="plan from the local replica without asking Graph")
    sp.add_argument(
        "--deep",
        action="store_true",
        help="compare every managed group with its members (default: only the groups changed in the cloud or in "
        "AD since the last reconcile; a deep one runs anyway every service.deep_reconcile_interval)",
    )
    sp.add_argument(
        "--allow-deletes",
        type=int,
        default=0,
        metavar="N",
        help="allow up to N group deletes past the threshold",
    )
    sp.add_argument(
        "--allow-removals",
        type=int,
        default=0,
        metavar="N",
        help="allow up to N member removals past safety.member_removal_percent",
    )
    sp.add_argument(
        "--allow-updates",
        type=int,
        default=0,
        metavar="N",
        help="allow up to N groups updated, renamed or moved past safety.update_percent",
    )
    sp.set_defaults(func=cmd_plan)

    sa = sub.add_parser(
        "apply",
        help="plan and apply (or apply a saved plan that still matches); exit 3 when changes were held back",
    )
    sa.add_argument(
        "--plan",
        metavar="FILE",
        help="apply exactly this plan, saved with `plan --out FILE`; refused when it no longer matches. A FILE "
        "that is no saved plan is a usage error (exit 64), found before anything is read or locked",
    )
    sa.add_argument(
        "--allow-deletes",
        type=int,
        default=0,
        metavar="N",
        help="allow up to N group deletes past the threshold",
    )
    sa.add_argument(
        "--allow-removals",
        type=int,
        default=0,
        metavar="N",
        help="allow up to N member removals past safety.member_removal_percent",
    )
    sa.add_argument(
        "--allow-updates",
        type=int,
        default=0,
        metavar="N",
        help="allow up to N groups updated, renamed or moved past safety.update_percent",
    )
    sa.add_argument(
        "--deep",
        action="store_true",
        help="compare every managed group with its members (default: only the groups changed in the cloud or in "
        "AD since the last reconcile; a deep one runs anyway every service.deep_reconcile_interval)",
    )
    sa.add_argument("--json", action="store_true", help="print the plan and each change's result as JSON")
    sa.add_argument("--verbose", action="store_true", help="list every member value of the plan")
    sa.set_defaults(func=cmd_apply)

    sal = sub.add_parser(
        "allow",
        help="let a running `writeback run` apply changes it holds over a safety threshold (at its next reconcile)",
    )
    sal.add_argument("--deletes", type=int, default=0, metavar="N", help="up to N group deletes")
    sal.add_argument("--removals", type=int, default=0, metavar="N", help="up to N member removals")
    sal.add_argument("--updates", type=int, default=0, metavar="N", help="up to N groups updated or renamed")
    sal.set_defaults(func=cmd_allow)

    pause_help = (
        "stop writing to AD while reading goes on: the service keeps its cloud replica current, apply and "
        "provision refuse, until `writeback resume` (logged with your login name)"
    )
    spa = sub.add_parser("pause", help=pause_help, description=pause_help[:1].upper() + pause_help[1:] + ".")
    spa.set_defaults(func=cmd_pause)
    resume_help = "write to AD again after `writeback pause`: the service's next cycle reconciles what changed meanwhile"
    sre = sub.add_parser(
        "resume", help=resume_help, description=resume_help[:1].upper() + resume_help[1:] + "."
    )
    sre.set_defaults(func=cmd_resume)

    sw = sub.add_parser("show", help="list the AD groups writeback manages, with their members")
    sw.add_argument("--json", action="store_true", help="machine-readable list")
    sw.set_defaults(func=cmd_show)

    sl = sub.add_parser("log", help="show the provisioning log (times in ISO 8601, UTC)")
    sl.add_argument("--group", help="only entries of this group: its name, part of its DN, or its cloud id")
    sl.add_argument(
        "--action",
        choices=LOG_ACTIONS,
        metavar="ACTION",
        help=f"only entries of this action: {', '.join(LOG_ACTIONS)}",
    )
    sl.add_argument(
        "--result",
        choices=LOG_RESULTS,
        metavar="RESULT",
        help=f"only entries with this result: {', '.join(LOG_RESULTS)}",
    )
    sl.add_argument("--run", metavar="RUN_ID", help="only entries of this run (the run column)")
    sl.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only entries newer than an age (90m, 12h, 7d) or an ISO 8601 time (UTC unless it names a zone)",
    )
    sl.add_argument(
        "--limit", type=int, default=200, metavar="N", help="at most N entries, newest (default 200)"
    )
    sl.add_argument("--json", action="store_true", help="machine-readable entries")
    sl.set_defaults(func=cmd_log)

    sc = sub.add_parser("config", help="configuration tools")
    scs = sc.add_subparsers(dest="config_cmd", required=True, action=_Subcommands, title="commands")
    scs.add_parser(
        "check", help="load the config, connect to Graph and AD, report what is wrong"
    ).set_defaults(func=cmd_config_check)

    sb = sub.add_parser("sandbox", help="a local Samba AD DC and Graph emulator to try writeback")
    sbs = sb.add_subparsers(dest="sandbox_cmd", required=True, action=_Subcommands, title="commands")
    up = sbs.add_parser("up", help="provision and start (idempotent)")
    up.add_argument("--dir", help=_SANDBOX_DIR_HELP)
    up.add_argument("--users", type=int, default=50, help="seeded AD users (default 50)")
    up.add_argument(
        "--postgres",
        action="store_true",
        help="also start a PostgreSQL server (Debian's package) for [state] url; sandbox.json gets postgres_url "
        "(no password: postgres_password_file) and DIR/writeback-ha-a.toml, -b.toml, two instances on it",
    )
    up.add_argument(
        "--exchange-schema",
        action="store_true",
        help="extend the schema with Exchange's recipient attributes (mailNickname, msExchRecipientTypeDetails, "
        "msExchRecipientDisplayType), as a forest prepared for Exchange has; irreversible for this sandbox",
    )
    up.add_argument(
        "--kerberos",
        action="store_true",
        help="also write DIR/writeback-kerberos.toml, binding with the service account's keytab (SASL GSSAPI, "
        "signed and sealed on port 389; no password); run writeback with KRB5_CONFIG=DIR/krb5.conf",
    )
    for name, text in (
        (
            "reset",
            "back to how `sandbox up` made it, in seconds: the DC from its snapshot, the emulator's tenant, "
            "writeback's state emptied (same domain, ports, CA and secrets)",
        ),
        ("down", "stop the sandbox's DC and emulator (its files are kept)"),
        ("status", "say what of the sandbox runs, as JSON"),
    ):
        x = sbs.add_parser(name, help=text)
        x.add_argument("--dir", help=_SANDBOX_DIR_HELP)
    sb.set_defaults(func=cmd_sandbox)

    se = sub.add_parser("emulator", help="the Microsoft Graph emulator")
    ses = se.add_subparsers(dest="emulator_cmd", required=True, action=_Subcommands, title="commands")
    serve = ses.add_parser("serve", help="serve a tenant file over HTTPS")
    serve.add_argument(
        "--tenant", required=True, metavar="FILE", help="the tenant file (users and groups, JSON)"
    )
    serve.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port, printed)")
    serve.add_argument(
        "--data-dir", help="TLS files, keys, admin token, emulator.json (default: a new temp dir)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="listen address (default 127.0.0.1, loopback only)"
    )
    serve.set_defaults(func=cmd_emulator)

    sr = sub.add_parser(
        "run", help="run continuously: delta polling every few seconds, reconcile hourly (quick), deep daily"
    )
    sr.add_argument("--once", action="store_true", help="one cycle, then exit")
    sr.set_defaults(func=cmd_run)

    spv = sub.add_parser(
        "provision",
        help="provision one cloud group (name or id) or user (id or UPN) now, step by step (through a running "
        "service)",
    )
    spv.add_argument(
        "group",
        metavar="GROUP_OR_USER",
        help='the cloud group\'s display name or object id; with [users] provision on ("soa" or '
        '"cloud_members"), also a user\'s object id or userPrincipalName',
    )
    spv.add_argument("--json", action="store_true", help="print the steps as JSON")
    spv.set_defaults(func=cmd_provision)

    su = sub.add_parser("rules", help="dynamic membership rules")
    sus = su.add_subparsers(dest="rules_cmd", required=True, action=_Subcommands, title="commands")
    rule_help = "a dynamic membership rule in Entra ID's syntax, quoted, e.g. 'user.department -eq \"Sales\"'"
    rc = sus.add_parser(
        "check",
        help="validate a rule",
        description=(
            "Validate a rule. A property the rule language does not know (e.g. user.departmnt) is\n"
            "a warning on stderr naming the closest known one; the rule is still valid (exit 0)."
        ),
    )
    rc.add_argument("rule", help=rule_help)
    rt = sus.add_parser("test", help="list the users a rule matches, or explain one user")
    rt.add_argument("rule", help=rule_help)
    rt.add_argument("--user", help="explain why this user (id, UPN or sAMAccountName) matches or not")
    rt.add_argument(
        "--source",
        choices=("cloud", "ad"),
        default="cloud",
        help="whose users: the cloud's (read from Graph; the default) or AD's",
    )
    rt.add_argument("--limit", type=int, default=50, metavar="N", help="list at most N users (default 50)")
    su.set_defaults(func=cmd_rules)

    st = sub.add_parser(
        "state",
        help="state store tools",
        description="Tools for the state store ([state] path, or url for PostgreSQL).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sts = st.add_subparsers(dest="state_cmd", required=True, action=_Subcommands, title="commands")
    sts.add_parser(
        "rebuild-replica",
        help="rebuild a damaged cloud replica from Microsoft Graph (keeps the provisioning log)",
        description=(
            "Forget the local copy of the cloud (users, groups, members, delta links) and read it\n"
            "again from Microsoft Graph with a full delta sync. The provisioning log, the last-applied\n"
            "state and the AD users cache are kept. Takes the writer lock: stop `writeback run` first.\n"
            "Nothing is written to AD; run `writeback plan` afterwards."
        ),
    ).set_defaults(func=cmd_state)
    mig = sts.add_parser(
        "migrate",
        help="copy this SQLite state into a new PostgreSQL database (for high availability)",
        description=(
            "Copy the whole SQLite state of [state] path (cloud replica, delta links, last-applied state,\n"
            "provisioning log, AD users cache, allowances) into an empty PostgreSQL database, in one\n"
            "transaction. Stop `writeback run` first (the writer lock is taken). The password comes from\n"
            "PGPASSWORD or ~/.pgpass, never from the URL. TLS is verified (sslmode=verify-full) unless the URL\n"
            "says otherwise for a server on this machine. Afterwards set [state] url to the same URL."
        ),
    )
    mig.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="postgresql://USER@HOST:PORT/DATABASE?sslmode=verify-full&sslrootcert=CA_FILE",
    )
    mig.set_defaults(func=cmd_state)

    _add_global_options_everywhere(p)
    return p


GLOBAL_OPTIONS = ("config", "verbose_log", "quiet")
_SANDBOX_DIR_HELP = f"sandbox directory (default $WRITEBACK_SANDBOX_DIR or {DEFAULT_SANDBOX_DIR})"


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--config, --verbose-log, --quiet. On subcommands their default is SUPPRESS, so a value given before
    the subcommand is not overwritten by the subcommand's default."""
    parser.add_argument(
        "-c",
        "--config",
        default=default,
        help="config file (default: $WRITEBACK_CONFIG, ./writeback.toml, or the sandbox's)",
    )
    flag = False if default is None else default
    parser.add_argument(
        "-v", "--verbose-log", action="store_true", default=flag, help="debug logging to stderr"
    )
    parser.add_argument("-q", "--quiet", action="store_true", default=flag, help="no progress messages")


def _add_global_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand the global options, so `writeback plan --config FILE` works like
    `writeback --config FILE plan`, and list the exit codes in each subcommand's --help.

    Also: each group of subcommands is named by its choices, never by its internal dest (`config_cmd`), in
    errors such as "the following arguments are required: {check}"; and each subcommand remembers its parser,
    so that a usage error found later (UsageError) prints that subcommand's usage."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            if action.metavar is None:
                action.metavar = "{" + ",".join(action.choices) + "}"
            if action.help is None:
                action.help = f"`{parser.prog} COMMAND --help` shows a command's options"
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                child.set_defaults(subcommand_parser=child)
                _add_global_options(child, default=argparse.SUPPRESS)
                if child.epilog is None:
                    child.epilog = EXIT_CODES_HELP
                    child.formatter_class = argparse.RawDescriptionHelpFormatter
                _add_global_options_everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose_log else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except UsageError as exc:
        usage: argparse.ArgumentParser = getattr(args, "subcommand_parser", parser)
        usage.error(str(exc))
    except WritebackError as exc:
        print(f"error: {printable(exc, lines=True)}", file=sys.stderr)  # messages quote names from AD
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader closed the pipe (`writeback show | head`): stop quietly, as grep and ls do. stdout is
        # pointed at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
