"""Settings, one small frozen model per concern, loaded from one TOML file and validated at load.

Errors name the file, the key and the reason (:class:`ConfigError`). Secrets are references (an environment
variable or a file), resolved by :func:`resolve_secret` only when a connection is made, and never printed.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from writeback.core.dn import is_within
from writeback.core.expressions import compile_expression
from writeback.core.rules import compile_rule
from writeback.core.text import printable, without_controls
from writeback.errors import ConfigError, RuleError

log = logging.getLogger("writeback.config")

DEFAULT_CN = 'Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))'
DEFAULT_CN_STYLE = "cloud_sync"  # mapping.cn_style: which of CN_STYLES gives mapping.cn when it is not set
CONNECT_CN = 'Append("Group_",[objectId])'
# Connect Sync's "Writeback Group Distinguished Name with cloud Display Name": <displayName>_<last 12 of the id>
# (the same shape as Cloud Sync's default; Left(...,51) keeps the CN within AD's 64 characters).
CONNECT_DISPLAY_NAME_CN = 'Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))'
CN_STYLES = {
    DEFAULT_CN_STYLE: DEFAULT_CN,
    "connect": CONNECT_CN,
    "connect_display_name": CONNECT_DISPLAY_NAME_CN,
}
DEFAULT_DESCRIPTION = "Left(Trim([description]),448)"
DEFAULT_DISPLAY_NAME = "[displayName]"
ANCHOR_MODES = ("auto", "msDS-ExternalDirectoryObjectId", "adminDescription", "both")
SCOPE_MODES = ("all", "selected", "writeback_enabled", "none")
MATCHERS = ("sid", "immutable_id")
DELETE_POLICIES = ("keep", "delete")
GROUP_SCOPES = ("universal", "global", "domainLocal")
FILTER_OPERATORS = (
    "EQUALS",
    "NOT_EQUALS",
    "IS_TRUE",
    "IS_FALSE",
    "IS_NULL",
    "IS_NOT_NULL",
    "REGEX_MATCH",
    "NOT_REGEX_MATCH",
    "GREATER_THAN",
    "LESS_THAN",
    "STARTS_WITH",
    "ENDS_WITH",
)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an environment variable or a file. Its repr never shows the value."""

    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


@dataclass(frozen=True)
class SourceSettings:
    tenant_id: str
    client_id: str
    client_secret: SecretRef | None = None
    certificate_file: str | None = None
    private_key_file: str | None = None
    authority: str | None = None
    graph_url: str = "https://graph.microsoft.com"
    ca_file: str | None = None
    timeout: float = 30.0
    max_retries: int = 8
    max_retry_after_seconds: float = 120.0  # longest wait before one Graph retry, Retry-After included
    # Graph requests in flight at once (fewer while Graph throttles); 1: the sequential read of before
    # (writeback.adapters.graph.firstread).
    max_in_flight: int = 8
    # A first read (or resync) planned and written in lots while it is read (writeback.app.streaming). Off by
    # default: at medium it made no measurable difference (the AD writes dominate once the read is concurrent)
    # and holds the read in memory until its transaction (docs/benchmarks.md, "writes that start at once").
    stream_first_apply: bool = False


@dataclass(frozen=True)
class TargetSettings:
    ldap_urls: tuple[str, ...]
    bind_dn: str
    bind_password: SecretRef
    base_dn: str
    target_ou: str
    gc_urls: tuple[str, ...] = ()
    ca_file: str | None = None
    insecure_plain_ldap: bool = False
    page_size: int = 1000
    max_values_per_modify: int = 5000
    timeout: float = 30.0
    # How writeback binds: "simple" (bind_dn + bind_password) or "kerberos" (SASL GSSAPI as ``principal``, its
    # ticket got from ``keytab`` and renewed by writeback, or, without a keytab, from the credential cache the
    # host keeps renewed: KRB5CCNAME). No AD password is then configured anywhere; docs/hardened-dc.md.
    auth: str = "simple"
    keytab: str | None = None
    principal: str | None = None


AUTH_MODES = ("simple", "kerberos")


@dataclass(frozen=True)
class FilterClause:
    attribute: str
    operator: str = "EQUALS"
    value: str | None = None


@dataclass(frozen=True)
class ScopeSettings:
    mode: str = "all"
    group_ids: tuple[str, ...] = ()
    # Filters are ORed, clauses within a filter ANDed (like Cloud Sync's scoping filters).
    filters: tuple[tuple[FilterClause, ...], ...] = ()
    # Mail groups in mode "all" (issue 13): Cloud Sync's "all" is cloud security groups only, so Microsoft 365
    # groups and mail-enabled groups (mail-enabled security, distribution lists) join only when asked.
    include_microsoft365: bool = False
    include_mail_enabled: bool = False

    @property
    def cloud_enabled(self) -> bool:
        """Whether cloud groups are written at all: false with mode "none" (on-prem dynamic groups only; no
        [source] is needed and Graph is never called)."""
        return self.mode != "none"


@dataclass(frozen=True)
class MappingSettings:
    cn: str = DEFAULT_CN
    target_ou: str | None = None  # an expression; None = the constant target.target_ou
    description: str = DEFAULT_DESCRIPTION
    display_name: str = DEFAULT_DISPLAY_NAME
    sam_account_name: str | None = None  # an expression; None = writeback's deterministic default
    anchor: str = "auto"
    group_scope: str = "universal"  # or an expression giving universal/global/domainLocal
    attributes: Mapping[str, str] = field(default_factory=dict)  # extra AD attribute -> expression
    # Taking over (issue 13): a group Microsoft's tools wrote (Connect v1/v2, Cloud Sync) or the original AD
    # group of an SOA-converted group keeps its CN, OU and sAMAccountName (and an SOA original its scope)
    # unless this is false; then the mapping renames and moves it like any other group.
    keep_adopted_names: bool = True
    # An SOA-converted group whose original AD group (found by its SID) no longer exists is reported and not
    # written; true creates a new AD group instead (with a new SID: ACLs on the old one do not follow).
    create_missing_originals: bool = False
    # Mail groups: also write the group's secondary smtp: addresses to proxyAddresses (Connect writes the primary
    # SMTP: address only, the default).
    secondary_smtp_addresses: bool = False


@dataclass(frozen=True)
class MemberSettings:
    match_order: tuple[str, ...] = ("sid", "immutable_id")
    max_members: int = 50_000
    nested_groups: bool = True


@dataclass(frozen=True)
class SafetySettings:
    delete_threshold: int = 10  # most AD groups one apply may delete; more needs --allow-deletes
    member_removal_percent: float = 30.0  # of managed member values (once >= 50); more needs --allow-removals
    update_percent: float = 30.0  # of managed groups updated/renamed/moved (once >= 10); --allow-updates
    # Seconds over which the thresholds count: what was applied in the last `window` counts with a new plan,
    # against what AD held at the window's start (a slow script that empties a group is held like a fast one).
    window: float = 3600.0
    on_soft_delete: str = "keep"
    on_out_of_scope: str = "keep"


@dataclass(frozen=True)
class StateSettings:
    path: str = "writeback.sqlite"  # SQLite, the default for one server
    # PostgreSQL for two or more servers (high availability, docs/ha.md): a libpq URL without its password;
    # TLS is verified (sslmode=verify-full) unless the URL says otherwise for a loopback server.
    url: str | None = None
    password: SecretRef | None = None  # password_env / password_file (or libpq's ~/.pgpass)
    connect_timeout: float = 5.0


@dataclass(frozen=True)
class ServiceSettings:
    poll_interval: float = 2.0
    reconcile_interval: float = 3600.0
    # Every reconcile_interval the service compares the groups changed since the last one (a quick reconcile,
    # writeback.app.reconcile); every deep_reconcile_interval it reads every managed group and member instead.
    deep_reconcile_interval: float = 86400.0
    health_file: str | None = None
    max_backoff: float = 300.0
    listen: str | None = None  # host:port the console serves on (see [console]); None: no console
    # Leader lease (PostgreSQL state only): one `writeback run` is active, the others stand by. The active one
    # renews every lease_renew_interval seconds; a standby takes over lease_ttl seconds after the last renewal.
    lease_ttl: float = 15.0
    lease_renew_interval: float = 5.0


# -- the console and alerts ([console], [alerts]) -----------------------------------------------------------


@dataclass(frozen=True)
class ConsoleSettings:
    """The web console `writeback run` serves on ``service.listen``."""

    tokens_file: str | None = None  # lines "name role sha256:<hex>"; roles: viewer, operator
    certificate_file: str | None = None  # PEM; with private_key_file the console speaks HTTPS
    private_key_file: str | None = None
    allow_insecure_http: bool = False  # needed to listen without TLS on a non-loopback address
    metrics_public: bool = False  # /metrics without sign-in (for a Prometheus without a token)
    log_retention_days: float = 90.0  # provisioning log rows older than this are deleted; 0 keeps all


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go: a JSON webhook (Teams/Slack-style) and/or e-mail."""

    webhook_url: str | None = None
    event_webhook_url: str | None = None  # opt-in: one POST per applied group change
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretRef | None = None
    mail_from: str | None = None
    mail_to: tuple[str, ...] = ()
    failing_for: float = 900.0  # seconds of failing cycles before an alert
    min_interval: float = 900.0  # the same alert at most once per this many seconds
    ca_file: str | None = None


def _console(root: Mapping[str, Any], file: str, path: Callable[[str | None], str | None]) -> ConsoleSettings:
    c = _table(root, "console", file)
    console = ConsoleSettings(
        tokens_file=path(c.get("tokens_file", str)),
        certificate_file=path(c.get("certificate_file", str)),
        private_key_file=path(c.get("private_key_file", str)),
        allow_insecure_http=c.get("allow_insecure_http", bool),
        metrics_public=c.get("metrics_public", bool),
        log_retention_days=c.get(
            "log_retention_days", float, check=lambda v: None if v >= 0 else "must be 0 (keep all) or more"
        ),
    )
    if bool(console.certificate_file) != bool(console.private_key_file):
        raise c.error("private_key_file", "certificate_file and private_key_file go together")
    c.finish()
    return console


def _alerts(root: Mapping[str, Any], file: str, path: Callable[[str | None], str | None]) -> AlertSettings:
    a = _table(root, "alerts", file)
    alerts = AlertSettings(
        webhook_url=a.get("webhook_url", str, check=_url(("https", "http")), echo=False),
        event_webhook_url=a.get("event_webhook_url", str, check=_url(("https", "http")), echo=False),
        smtp_host=a.get("smtp_host", str),
        smtp_port=a.get("smtp_port", int, check=_positive),
        smtp_starttls=a.get("smtp_starttls", bool),
        smtp_username=a.get("smtp_username", str),
        smtp_password=_resolved(a.secret("smtp_password", required=False), path),
        mail_from=a.get("mail_from", str),
        mail_to=a.strings("mail_to"),
        failing_for=a.get("failing_for", float, check=_positive),
        min_interval=a.get("min_interval", float, check=lambda v: None if v >= 0 else "must be 0 or more"),
        ca_file=path(a.get("ca_file", str)),
    )
    if alerts.smtp_host and not (alerts.mail_from and alerts.mail_to):
        raise a.error("mail_to", "e-mail alerts (smtp_host) need mail_from and mail_to")
    if (alerts.smtp_username or alerts.smtp_password) and not alerts.smtp_starttls:
        # smtplib's login() over a connection without STARTTLS sends the password base64-encoded, that is in
        # clear text. writeback has no implicit-TLS (SMTPS, port 465) option, so STARTTLS is the only TLS.
        raise a.error(
            "smtp_starttls",
            "is false while SMTP credentials are set (smtp_username/smtp_password): the password would cross "
            "the network in clear text. Set smtp_starttls = true (the server must offer STARTTLS), or remove "
            "the credentials to send through a relay that needs none",
        )
    a.finish()
    return alerts


# -- end of the console and alerts block ----------------------------------------------------------------------


@dataclass(frozen=True)
class DynamicGroupSettings:
    """An on-prem dynamic group: an AD group whose members are the AD users matching ``rule``."""

    id: str  # stable: the anchor is WritebackDynamic_<id>
    name: str  # CN, displayName and (cleaned) sAMAccountName
    rule: str
    ou: str  # where the group lives
    users_base: str  # where users are read
    description: str | None = None
    group_scope: str = "universal"


# -- users ([users], issue 24) ------------------------------------------------------------------------------
USER_PROVISION_MODES = ("off", "soa", "cloud_members")
ON_LEAVE_POLICIES = ("disable", "delete", "keep")


def _ignore_empty(graph_property: str) -> str:
    return f"IgnoreFlowIfNullOrEmpty([{graph_property}])"


# Cloud Sync's default user mappings to AD (how-to-configure "User attribute mappings", entra-docs), by AD
# attribute, with the Graph v1.0 user property each comes from. Every one is inside IgnoreFlowIfNullOrEmpty
# (Cloud Sync maps displayName directly; an Entra user always has one, so the wrapper changes nothing but
# keeps an empty value from ever clearing AD). Left out on purpose: the naming attributes (cn, sAMAccountName,
# userPrincipalName, parentDistinguishedName: an SOA user keeps its account's names and place), accountDisabled
# (soa never disables an account), msDS-ObjectSoa (AD object enforcement, preview) and manager (a reference to
# another account, not resolved yet).
DEFAULT_USER_ATTRIBUTES: Mapping[str, str] = {
    "displayName": _ignore_empty("displayName"),
    "givenName": _ignore_empty("givenName"),
    "sn": _ignore_empty("surname"),
    "department": _ignore_empty("department"),
    "company": _ignore_empty("companyName"),
    "co": _ignore_empty("country"),
    "l": _ignore_empty("city"),
    "st": _ignore_empty("state"),
    "postalCode": _ignore_empty("postalCode"),
    "streetAddress": _ignore_empty("streetAddress"),
    "mobile": _ignore_empty("mobilePhone"),
    "employeeID": _ignore_empty("employeeId"),
    "preferredLanguage": _ignore_empty("preferredLanguage"),
}


@dataclass(frozen=True)
class UserSettings:
    """``[users]``: cloud users written into AD accounts. Off by default.

    ``provision = "soa"``: a synced user whose source of authority moved to the cloud (user SOA) and who is a
    member of an in-scope group is written into its original AD account, found by its SID only.

    ``provision = "cloud_members"`` does that too, and creates an AD account in ``target_ou`` for each
    cloud-only member of an in-scope group (``guests``: B2B guests too), anchored ``User_<objectId>`` in
    msDS-ExternalDirectoryObjectId and adminDescription, with a random password set over TLS in the add and
    never kept. ``on_leave``: what happens to such an account when its user leaves every in-scope group, is
    disabled or soft-deleted (disable | delete | keep); a hard delete deletes it. ``create_disabled`` creates
    accounts with ACCOUNTDISABLE; ``smart_card_required`` sets SMARTCARD_REQUIRED (0x40000) on them."""

    provision: str = "off"
    target_ou: str | None = None
    guests: bool = False
    on_leave: str = "disable"
    create_disabled: bool = False
    smart_card_required: bool = False
    # AD attribute -> mapping expression, over Cloud Sync's defaults; "" drops a default.
    attributes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_USER_ATTRIBUTES))

    @property
    def enabled(self) -> bool:
        return self.provision != "off"

    @property
    def creates_accounts(self) -> bool:
        """True when writeback creates accounts for cloud-only members (``cloud_members``)."""
        return self.provision == "cloud_members"


@dataclass(frozen=True)
class Settings:
    source: SourceSettings | None  # None only with scope.mode = "none"
    target: TargetSettings
    scope: ScopeSettings = ScopeSettings()
    mapping: MappingSettings = MappingSettings()
    members: MemberSettings = MemberSettings()
    safety: SafetySettings = SafetySettings()
    state: StateSettings = StateSettings()
    service: ServiceSettings = ServiceSettings()
    dynamic_groups: tuple[DynamicGroupSettings, ...] = ()
    path: str = ""
    console: ConsoleSettings = ConsoleSettings()
    alerts: AlertSettings = AlertSettings()
    users: UserSettings = UserSettings()


T = TypeVar("T")


class _FromField:
    """The default of :meth:`_Reader.get`: the settings field's own default (required when it has none)."""


_FROM_FIELD = _FromField()


@dataclass(frozen=True)
class _Spec:
    """What one TOML table may hold, and the defaults of the keys that have one.

    Derived from the table's settings dataclass (:func:`_spec`), so each default is written once: in the
    dataclass. A key without a default is required."""

    keys: frozenset[str]
    defaults: Mapping[str, Callable[[], Any]]


def _spec(cls: type, *, renamed: Mapping[str, str] | None = None, extra: tuple[str, ...] = ()) -> _Spec:
    """The keys of ``cls``'s table: one per field (``renamed`` maps a field to a differently named key), a
    secret field as NAME_env / NAME_file (NAME itself is known so that it can be refused as an inline secret),
    plus ``extra`` keys that are no field (read with an explicit default)."""
    keys, defaults = set(extra), dict[str, Callable[[], Any]]()
    for f in fields(cls):
        key = (renamed or {}).get(f.name, f.name)
        keys.add(key)
        if "SecretRef" in str(f.type):
            keys |= {f"{key}_env", f"{key}_file"}
        elif f.default is not MISSING:
            defaults[key] = _constant(f.default)
        elif f.default_factory is not MISSING:
            defaults[key] = f.default_factory
    return _Spec(frozenset(keys), defaults)


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


_TABLES: dict[str, _Spec] = {
    "source": _spec(SourceSettings),
    "target": _spec(TargetSettings, renamed={"gc_urls": "gc_url"}),
    "scope": _spec(ScopeSettings),
    "mapping": _spec(MappingSettings, extra=("cn_style",)),
    "members": _spec(MemberSettings),
    "safety": _spec(SafetySettings),
    "state": _spec(StateSettings),
    "service": _spec(ServiceSettings),
    "dynamic_groups": _spec(DynamicGroupSettings),  # an array of tables, one per group
    "console": _spec(ConsoleSettings),
    "alerts": _spec(AlertSettings),
    "users": _spec(UserSettings),
}
_FILTER = _Spec(frozenset({"clauses"}), {})  # one [[scope.filters]] table
_CLAUSE = _spec(FilterClause)


def _check_keys(data: Mapping[str, Any], spec: _Spec, file: str, prefix: str) -> None:
    """Refuse the first unknown key of a table, naming the known key it most likely misspells.

    Called before any value of the table is read, so a misspelt required key is reported as misspelt, not
    only as missing."""
    unknown = sorted(set(data) - spec.keys)
    if unknown:
        raise ConfigError(
            _unknown_reason(unknown[0], spec.keys, f"[{prefix}]", "setting"),
            file=file,
            key=f"{prefix}.{unknown[0]}",
        )


def _unknown_reason(name: str, known: frozenset[str] | set[str], where: str, what: str) -> str:
    """``unknown setting `taget_ou` in [target], did you mean `target_ou`?``: a close match from the known
    names (difflib), else the table a known setting of that name belongs in, else where every setting is
    listed."""
    reason = f"unknown {what} `{name}`" + (f" in {where}" if where else "")
    if close := difflib.get_close_matches(name, sorted(known), n=1):
        return f"{reason}, did you mean `{close[0]}`?"
    homes = [table for table, spec in _TABLES.items() if name in spec.keys]
    if what == "setting" and homes:
        return f"{reason}; `{name}` is a setting of [{'] or ['.join(homes)}]"
    return f"{reason} (check the spelling; examples/writeback.toml lists every {what})"


class _Reader:
    """Typed access to one TOML table with file/key-qualified errors and unknown-key detection.

    Defaults come from the table's :class:`_Spec` (the settings dataclass); unknown keys are refused when the
    reader is made, before anything is read."""

    def __init__(self, data: Mapping[str, Any], file: str, prefix: str, spec: _Spec) -> None:
        _check_keys(data, spec, file, prefix)
        self.data, self.file, self.prefix, self.spec, self.used = data, file, prefix, spec, set[str]()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(reason, file=self.file, key=self.key(name))

    def get(
        self,
        name: str,
        kind: type[T] | tuple[type, ...],
        default: Any = _FROM_FIELD,
        check: Callable[[Any], str | None] | None = None,
        *,
        echo: bool = True,
    ) -> Any:
        if name not in self.spec.keys:  # a parser bug, not a config problem: every key read is declared
            raise AssertionError(f"{self.key(name)} is read but not declared in its table's _Spec")
        self.used.add(name)
        if name not in self.data:
            if isinstance(default, _FromField):
                if name not in self.spec.defaults:
                    raise self.error(name, "is required")
                return self.spec.defaults[name]()
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            shown = f" {value!r}" if echo else " (value not shown: it may be a secret)"
            raise self.error(name, f"must be {expected}, got {type(value).__name__}{shown}")
        if check and (problem := check(value)):
            raise self.error(name, problem)
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: Any = _FROM_FIELD) -> str:
        value: str = self.get(name, str, default)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.get(name, list)
        if not all(isinstance(v, str) for v in value):
            raise self.error(name, "must be a list of strings")
        return tuple(value)

    def secret(self, name: str, required: bool) -> SecretRef | None:
        # Neither value is ever shown in an error: a secret pasted where the variable's name belongs would be
        # printed to a terminal, a CI log or the journal.
        env = self.get(f"{name}_env", str, None, _env_name, echo=False)
        file = self.get(f"{name}_file", str, None, echo=False)
        self.used.add(name)
        if name in self.data:
            raise self.error(name, f"secrets are not allowed inline; use {name}_env or {name}_file")
        if env and file:
            raise self.error(f"{name}_env", f"set either {name}_env or {name}_file, not both")
        if not env and not file:
            if required:
                raise self.error(
                    f"{name}_env", f"is required: set {name}_env (an environment variable) or {name}_file"
                )
            return None
        return SecretRef(env=env, file=file)

    def finish(self) -> None:
        """A declared key the parser never read would be silently ignored: refuse it as unknown instead."""
        unread = sorted(set(self.data) - self.used)
        if unread:
            raise self.error(
                unread[0], "is declared but not read by this version of writeback (a bug: report it)"
            )


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _percent(v: Any) -> str | None:
    return None if 0 <= v <= 100 else "must be a percentage from 0 to 100"


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(v: str) -> str | None:
    """A POSIX-style environment variable name, or why not -- without repeating the value (it may be the
    secret itself, pasted in the wrong key)."""
    if _ENV_NAME.fullmatch(v):
        return None
    return (
        "must be the NAME of an environment variable (letters, digits and _, not starting with a digit), "
        "and the value given is not one (value not shown: it may be the secret itself). If you pasted the "
        "secret here, remove it from this file, treat it as exposed (rotate it), put it in an environment "
        "variable and give that variable's name"
    )


def _gc_url(v: Any) -> str | None:
    """A Global Catalog URL: ldaps:// or ldap:// (StartTLS), a host and the GC port.

    The Global Catalog listens on 3268 (LDAP, StartTLS) and 3269 (LDAP over TLS), not on the domain's 389/636:
    https://learn.microsoft.com/en-us/troubleshoot/windows-server/networking/service-overview-and-network-port-requirements
    A DC's 389/636 would answer for its own domain only, so members from other domains would silently be
    missing."""
    for item in v if isinstance(v, list) else [v]:
        if not isinstance(item, str):
            return "must be a URL string or a list of them"
        try:
            parts = urlsplit(item)
            port = parts.port
        except ValueError as exc:
            return f"{item!r} is not a valid URL ({exc})"
        if parts.scheme.lower() not in ("ldaps", "ldap") or not parts.hostname:
            return f"{item!r} must be an ldaps:// (or ldap:// with StartTLS) URL with a host"
        if parts.path not in ("", "/") or parts.query:
            return f"{item!r} must not have a path or query: give only ldaps://host:3269"
        if port is None:
            return (
                f"{item!r} needs the Global Catalog port: ldaps://{parts.hostname}:3269 (or ldap://...:3268)"
            )
        if port in (389, 636):
            return (
                f"{item!r} uses port {port}, the domain's LDAP port; the Global Catalog listens on 3269 "
                "(ldaps://) or 3268 (ldap:// with StartTLS)"
            )
    return None


def _table(root: Mapping[str, Any], name: str, file: str, required: bool = False) -> _Reader:
    if name not in root:
        if required:
            raise ConfigError(f"the [{name}] table is required", file=file)
        return _Reader({}, file, name, _TABLES[name])
    value = root[name]
    if not isinstance(value, dict):
        raise ConfigError("must be a table", file=file, key=name)
    return _Reader(value, file, name, _TABLES[name])


def _check_every_table(root: Mapping[str, Any], file: str) -> None:
    """Unknown tables and keys anywhere in the file, before any value is read: a misspelling is reported as
    one even when it also leaves a required key missing (in its own table or another)."""
    unknown = sorted(set(root) - set(_TABLES))
    if unknown:
        raise ConfigError(_unknown_reason(unknown[0], set(_TABLES), "", "table"), file=file, key=unknown[0])
    for name, value in root.items():
        items = value if name == "dynamic_groups" and isinstance(value, list) else [value]
        for i, item in enumerate(items):
            prefix = f"{name}[{i}]" if name == "dynamic_groups" else name
            if isinstance(item, dict):
                _check_keys(item, _TABLES[name], file, prefix)


def _url(schemes: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        items = v if isinstance(v, list) else [v]
        for item in items:
            if not isinstance(item, str) or not item.lower().startswith(tuple(s + "://" for s in schemes)):
                return f"{item!r} must start with {' or '.join(s + '://' for s in schemes)}"
        return None

    return check


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]", "")
_VERIFIED_SSLMODES = ("verify-full", "verify-ca")


def postgres_url_problem(v: Any) -> str | None:
    """A PostgreSQL URL without a password, and with TLS verified unless the server is on this machine.

    The value is never echoed: a URL may carry a password by mistake."""
    if not isinstance(v, str) or not v.lower().startswith(("postgresql://", "postgres://")):
        return "must be a PostgreSQL URL: postgresql://USER@HOST:PORT/DATABASE?sslmode=verify-full"
    try:
        parts = urlsplit(v)
        query = parse_qs(parts.query)
        host = parts.hostname or ""
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.password is not None or "password" in query:
        return (
            "must not contain the password (secrets are not allowed inline); use state.password_env or "
            "state.password_file, or libpq's ~/.pgpass file"
        )
    sslmode = (query.get("sslmode") or ["verify-full"])[-1]
    hosts = (query.get("host") or [host])[-1]
    hostaddrs = (query.get("hostaddr") or [""])[-1]
    if hostaddrs and sslmode == "verify-full" and _addresses(hostaddrs) != _addresses(hosts):
        # libpq: with both host and hostaddr "the value for hostaddr gives the server network address. The
        # value for host is ignored unless needed for authentication or verification purposes" (libpq,
        # Parameter Key Words, hostaddr: https://www.postgresql.org/docs/current/libpq-connect.html): the
        # server reached is then not the one whose name verify-full checked.
        return (
            "has a hostaddr other than its host under sslmode=verify-full: libpq connects to hostaddr but "
            "verifies the server's certificate against host, so any server at that address holding a "
            "certificate for host is trusted, and the address actually used is not the name you checked. "
            "Remove hostaddr (let host resolve), or give host the same address as hostaddr"
        )
    # Where libpq connects: hostaddr when given (a loopback host with a remote hostaddr is not local).
    target = hostaddrs or hosts
    local = target.lower() in _LOOPBACK_HOSTS or target.startswith("/") or _all_loopback(hostaddrs)
    if sslmode not in _VERIFIED_SSLMODES and not local:
        return (
            f"sslmode={sslmode} does not verify the server's certificate; use sslmode=verify-full (the "
            "default when sslmode is not given) with sslrootcert=<CA file> for a server on the network"
        )
    return None


def _addresses(value: str) -> list[str]:
    """A libpq host or hostaddr list, each entry canonical (an IP address in its compressed form)."""
    out = []
    for item in value.split(","):
        try:
            out.append(str(ipaddress.ip_address(item.strip().strip("[]"))))
        except ValueError:
            out.append(item.strip().lower())
    return out


def _all_loopback(hostaddrs: str) -> bool:
    """Whether every address of a hostaddr list is a loopback address (False for an empty list)."""
    if not hostaddrs:
        return False
    try:
        return all(ipaddress.ip_address(a.strip().strip("[]")).is_loopback for a in hostaddrs.split(","))
    except ValueError:
        return False


def _one_or_more(value: str | list[str] | None) -> tuple[str, ...]:
    """A setting that takes one string or a list of them (tried in order), as a tuple."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def parse_settings(root: Mapping[str, Any], file: str = "<config>") -> Settings:
    """Validate a parsed TOML document. Pure: no environment or file access."""
    base_dir = Path(file).parent if file != "<config>" else Path(".")

    def path(value: str | None) -> str | None:
        return None if value is None else str((base_dir / os.path.expanduser(value)).resolve())

    _check_every_table(root, file)
    scope = _scope(root, file)
    source = _source(root, file, path, required=scope.cloud_enabled)

    t = _table(root, "target", file, required=True)
    insecure = t.get("insecure_plain_ldap", bool)
    urls = t.get("ldap_urls", list, check=_url(("ldaps", "ldap")))
    if not urls:
        raise t.error("ldap_urls", "needs at least one URL")
    auth = t.choice("auth", AUTH_MODES)
    kerberos = auth == "kerberos"
    keytab, principal, bind_password = _target_auth(t, kerberos, path)
    target = TargetSettings(
        ldap_urls=tuple(urls),
        # With Kerberos the account is the principal's; bind_dn may still name it (for the rights report).
        bind_dn=t.get("bind_dn", str, "" if kerberos else _FROM_FIELD),
        bind_password=bind_password,
        auth=auth,
        keytab=keytab,
        principal=principal,
        base_dn=t.get("base_dn", str),
        target_ou=t.get("target_ou", str),
        gc_urls=_one_or_more(t.get("gc_url", (str, list), check=_gc_url)),
        ca_file=path(t.get("ca_file", str)),
        insecure_plain_ldap=insecure,
        page_size=t.get("page_size", int, check=_positive),
        max_values_per_modify=t.get("max_values_per_modify", int, check=_positive),
        timeout=t.get("timeout", float, check=_positive),
    )
    t.finish()
    if not is_within(target.target_ou, target.base_dn):
        raise ConfigError(
            f"{target.target_ou!r} is not inside base_dn {target.base_dn!r}",
            file=file,
            key="target.target_ou",
        )

    m = _table(root, "mapping", file)
    cn_style = m.choice("cn_style", tuple(CN_STYLES), DEFAULT_CN_STYLE)
    attrs = m.get("attributes", dict)
    mapping = MappingSettings(
        cn=m.get("cn", str, CN_STYLES[cn_style]),
        target_ou=m.get("target_ou", str),
        description=m.get("description", str),
        display_name=m.get("display_name", str),
        sam_account_name=m.get("sam_account_name", str),
        anchor=m.choice("anchor", ANCHOR_MODES),
        group_scope=m.get("group_scope", str),
        attributes={str(k): str(v) for k, v in attrs.items()},
        keep_adopted_names=m.get("keep_adopted_names", bool),
        create_missing_originals=m.get("create_missing_originals", bool),
        secondary_smtp_addresses=m.get("secondary_smtp_addresses", bool),
    )
    m.finish()
    _check_expressions(mapping, file)
    _check_mapped_attributes(mapping, file)

    mb = _table(root, "members", file)
    order = mb.strings("match_order")
    bad = [o for o in order if o not in MATCHERS]
    if bad or not order:
        raise mb.error("match_order", f"must list one or more of {', '.join(MATCHERS)}; got {list(order)}")
    members = MemberSettings(
        order, mb.get("max_members", int, check=_positive), mb.get("nested_groups", bool)
    )
    mb.finish()

    sf = _table(root, "safety", file)
    safety = SafetySettings(
        delete_threshold=sf.get(
            "delete_threshold", int, check=lambda v: None if v >= 0 else "must be 0 or more"
        ),
        member_removal_percent=float(sf.get("member_removal_percent", float, check=_percent)),
        update_percent=float(sf.get("update_percent", float, check=_percent)),
        window=float(
            sf.get("window", float, check=lambda v: None if v >= 0 else "must be 0 or more seconds")
        ),
        on_soft_delete=sf.choice("on_soft_delete", DELETE_POLICIES),
        on_out_of_scope=sf.choice("on_out_of_scope", DELETE_POLICIES),
    )
    sf.finish()

    st = _table(root, "state", file)
    state = StateSettings(
        path=path(st.get("path", str)) or StateSettings.path,
        url=st.get("url", str, check=postgres_url_problem, echo=False),
        password=_resolved(st.secret("password", required=False), path),
        connect_timeout=st.get("connect_timeout", float, check=_positive),
    )
    if state.password is not None and state.url is None:
        raise st.error("password_env", "is set but state.url is not: the password is for PostgreSQL")
    st.finish()

    sv = _table(root, "service", file)
    service = ServiceSettings(
        poll_interval=sv.get("poll_interval", float, check=_positive),
        reconcile_interval=sv.get("reconcile_interval", float, check=_positive),
        deep_reconcile_interval=sv.get("deep_reconcile_interval", float, check=_positive),
        health_file=path(sv.get("health_file", str)),
        max_backoff=sv.get("max_backoff", float, check=_positive),
        listen=sv.get("listen", str, check=_listen),
        lease_ttl=sv.get("lease_ttl", float, check=_positive),
        lease_renew_interval=sv.get("lease_renew_interval", float, check=_positive),
    )
    if service.lease_renew_interval * 2 > service.lease_ttl:
        raise sv.error(
            "lease_renew_interval",
            f"must be at most half of lease_ttl ({service.lease_ttl:g} s), so that one late renewal does not "
            f"end the lease; the defaults are {ServiceSettings.lease_renew_interval:g} and "
            f"{ServiceSettings.lease_ttl:g}",
        )
    sv.finish()
    dynamic = _dynamic_groups(root, file, target)
    console, alerts = _console(root, file, path), _alerts(root, file, path)
    users = _users(root, file, target)
    if service.listen and not console.certificate_file and not console.allow_insecure_http:
        host = service.listen.rpartition(":")[0].strip("[]")
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(
                f"the console would listen on {service.listen} without TLS: set console.certificate_file and "
                "console.private_key_file, listen on 127.0.0.1, or set console.allow_insecure_http = true "
                "(only behind a TLS-terminating proxy)",
                file=file,
                key="service.listen",
            )
    return Settings(
        source,
        target,
        scope,
        mapping,
        members,
        safety,
        state,
        service,
        dynamic,
        path=file,
        console=console,
        alerts=alerts,
        users=users,
    )


def _users(root: Mapping[str, Any], file: str, target: TargetSettings) -> UserSettings:
    """The [users] table (see :class:`UserSettings`)."""
    u = _table(root, "users", file)
    provision = u.get("provision", str)
    if provision not in USER_PROVISION_MODES:
        raise u.error("provision", f"must be one of {', '.join(USER_PROVISION_MODES)}; got {provision!r}")
    target_ou = u.get("target_ou", str)
    if target_ou is not None and not is_within(target_ou, target.base_dn):
        raise u.error("target_ou", f"{target_ou!r} is not inside target.base_dn")
    if provision == "cloud_members":
        if not target_ou:
            raise u.error("target_ou", 'is required with provision = "cloud_members" (where new accounts go)')
        if is_within(target_ou, target.target_ou) or is_within(target.target_ou, target_ou):
            raise u.error(
                "target_ou",
                f"{target_ou!r} must not contain or lie inside the groups' target.target_ou "
                f"({target.target_ou!r}): keep created accounts and written groups apart",
            )
    raw = u.get("attributes", dict)
    attributes = dict(DEFAULT_USER_ATTRIBUTES)
    for name, text in raw.items():
        key = f"attributes.{name}"
        if not isinstance(text, str):
            raise u.error(key, f"must be a mapping expression (a string), got {type(text).__name__}")
        if reason := RESERVED_USER_ATTRIBUTES.get(str(name).lower()):
            raise u.error(key, f"cannot be mapped: {name} {reason}")
        if text == "":
            attributes.pop(str(name), None)  # "" drops one of Cloud Sync's defaults
            continue
        try:
            compile_expression(text)
        except ConfigError as exc:
            raise u.error(key, str(exc)) from exc
        attributes[str(name)] = text
    users = UserSettings(
        provision=provision,
        target_ou=target_ou,
        guests=u.get("guests", bool),
        on_leave=u.choice("on_leave", ON_LEAVE_POLICIES),
        create_disabled=u.get("create_disabled", bool),
        smart_card_required=u.get("smart_card_required", bool),
        attributes=attributes,
    )
    u.finish()
    return users


def _scope(root: Mapping[str, Any], file: str) -> ScopeSettings:
    sc = _table(root, "scope", file)
    filters_raw = sc.get("filters", list)
    filters: list[tuple[FilterClause, ...]] = []
    for i, f in enumerate(filters_raw):
        if isinstance(f, dict):
            _check_keys(f, _FILTER, file, f"scope.filters[{i}]")
        clauses_raw = f.get("clauses") if isinstance(f, dict) else None
        if not isinstance(clauses_raw, list) or not clauses_raw:
            raise sc.error(f"filters[{i}]", "must be a table with a non-empty 'clauses' list")
        clauses = []
        for j, c in enumerate(clauses_raw):
            cr = _Reader(c if isinstance(c, dict) else {}, file, f"scope.filters[{i}].clauses[{j}]", _CLAUSE)
            op = cr.choice("operator", FILTER_OPERATORS)
            clauses.append(FilterClause(cr.get("attribute", str), op, cr.get("value", str)))
            cr.finish()
        filters.append(tuple(clauses))
    scope = ScopeSettings(
        mode=sc.choice("mode", SCOPE_MODES),
        group_ids=sc.strings("group_ids"),
        filters=tuple(filters),
        include_microsoft365=sc.get("include_microsoft365", bool),
        include_mail_enabled=sc.get("include_mail_enabled", bool),
    )
    if scope.mode == "selected" and not scope.group_ids:
        raise sc.error("group_ids", 'mode = "selected" needs at least one group id')
    sc.finish()
    return scope


def _listen(v: str) -> str | None:
    host, _, port = v.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080"
    return None


def _group_name(v: str) -> str | None:
    """A dynamic group's name, its CN and (cleaned) sAMAccountName: 1-64 characters, none of them a control
    character (AD refuses them in a sAMAccountName; a terminal acts on them)."""
    if not 0 < len(v) <= 64:
        return "must be 1-64 characters"
    if without_controls(v) != v:
        return f"must not contain a control character (got '{printable(v)}')"
    return None


def _dynamic_groups(
    root: Mapping[str, Any], file: str, target: TargetSettings
) -> tuple[DynamicGroupSettings, ...]:
    raw = root.get("dynamic_groups", [])
    if not isinstance(raw, list):
        raise ConfigError("must be an array of tables ([[dynamic_groups]])", file=file, key="dynamic_groups")
    out: list[DynamicGroupSettings] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        r = _Reader(
            item if isinstance(item, dict) else {}, file, f"dynamic_groups[{i}]", _TABLES["dynamic_groups"]
        )
        gid = r.get(
            "id",
            str,
            check=lambda v: (
                None
                if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v)
                else "must be 1-64 letters, digits, '.', '_' or '-' (it is part of the anchor)"
            ),
        )
        if gid.lower() in seen:
            raise r.error("id", f"duplicate dynamic group id {gid!r}")
        seen.add(gid.lower())
        rule = r.get("rule", str)
        try:
            compiled = compile_rule(rule)
        except RuleError as exc:
            raise r.error("rule", str(exc)) from exc
        if compiled.kind != "user" or compiled.special == "memberOf":
            raise r.error("rule", "on-prem dynamic groups support user rules (memberOf rules are cloud-only)")
        for warning in compiled.warnings:  # valid, so not an error; said wherever the config is loaded
            log.warning("%s: %s: %s", file, r.key("rule"), warning)
        ou = r.get("ou", str, target.target_ou)
        users_base = r.get("users_base", str, target.base_dn)
        for key, dn in (("ou", ou), ("users_base", users_base)):
            if not is_within(dn, target.base_dn):
                raise r.error(key, f"{dn!r} is not inside target.base_dn")
        out.append(
            DynamicGroupSettings(
                id=gid,
                name=r.get("name", str, check=_group_name),
                rule=rule,
                ou=ou,
                users_base=users_base,
                description=r.get("description", str),
                group_scope=r.choice("group_scope", GROUP_SCOPES),
            )
        )
        r.finish()
    return tuple(out)


def _source(
    root: Mapping[str, Any], file: str, path: Callable[[str | None], str | None], *, required: bool
) -> SourceSettings | None:
    """The [source] table; optional only with scope.mode = "none" (on-prem dynamic groups alone)."""
    if "source" not in root and not required:
        return None
    s = _table(root, "source", file, required=True)
    graph_url = s.get("graph_url", str, check=_url(("https",))).rstrip("/")
    secret = _resolved(s.secret("client_secret", required=False), path)
    cert, key = s.get("certificate_file", str), s.get("private_key_file", str)
    if not secret and not cert:
        raise s.error(
            "client_secret_env", "set a credential: client_secret_env, client_secret_file or certificate_file"
        )
    if cert and not key:
        raise s.error("private_key_file", "is required with certificate_file")
    source = SourceSettings(
        tenant_id=s.get("tenant_id", str),
        client_id=s.get("client_id", str),
        client_secret=secret,
        certificate_file=path(cert),
        private_key_file=path(key),
        authority=s.get("authority", str, check=_url(("https",))),
        graph_url=graph_url,
        ca_file=path(s.get("ca_file", str)),
        timeout=s.get("timeout", float, check=_positive),
        max_retries=s.get("max_retries", int, check=lambda v: None if v >= 0 else "must be 0 or more"),
        max_retry_after_seconds=s.get("max_retry_after_seconds", float, check=_positive),
        max_in_flight=s.get(
            "max_in_flight", int, check=lambda v: None if 1 <= v <= 64 else "must be between 1 and 64"
        ),
        stream_first_apply=s.get("stream_first_apply", bool),
    )
    s.finish()
    return source


_PRINCIPAL = re.compile(r"^[^@\s/]+(/[^@\s/]+)?@[^@\s]+$")


def _target_auth(
    t: Any, kerberos: bool, path: Callable[[str | None], str | None]
) -> tuple[str | None, str | None, SecretRef]:
    """[target] auth's keys: (keytab, principal, bind_password). A simple bind needs the password and no
    Kerberos keys; a Kerberos bind needs no password (and refuses one: it would sit unused in a file) and a
    principal with its keytab, or neither (the host's renewed credential cache, KRB5CCNAME)."""
    keytab = path(t.get("keytab", str))
    principal = t.get("principal", str)
    if not kerberos:
        for name, value in (("keytab", keytab), ("principal", principal)):
            if value is not None:
                raise t.error(name, 'is used only with auth = "kerberos"; drop it, or set auth = "kerberos"')
        return None, None, _resolved(t.secret("bind_password", required=True), path) or SecretRef()
    if t.secret("bind_password", required=False) is not None:
        raise t.error(
            "bind_password_file",
            'is not used with auth = "kerberos" (the keytab is the credential): remove it, so no AD password '
            "is kept for writeback",
        )
    if principal is not None and not _PRINCIPAL.match(principal):
        raise t.error(
            "principal", f"{principal!r} is not a Kerberos principal like svc-writeback@CORP.EXAMPLE.COM"
        )
    if keytab is not None and principal is None:
        raise t.error("principal", "is required with keytab: the principal whose key the keytab holds")
    if t.data.get("insecure_plain_ldap"):
        raise t.error(
            "insecure_plain_ldap",
            'does not apply with auth = "kerberos": an ldap:// URL is always signed and sealed by Kerberos '
            "(SASL GSSAPI); remove it",
        )
    return keytab, principal, SecretRef()


def _resolved(ref: SecretRef | None, path: Callable[[str | None], str | None]) -> SecretRef | None:
    return None if ref is None else SecretRef(env=ref.env, file=path(ref.file))


def _check_expressions(mapping: MappingSettings, file: str) -> None:
    exprs = {"cn": mapping.cn, "description": mapping.description, "display_name": mapping.display_name}
    if mapping.target_ou:
        exprs["target_ou"] = mapping.target_ou
    if mapping.sam_account_name:
        exprs["sam_account_name"] = mapping.sam_account_name
    if mapping.group_scope not in GROUP_SCOPES:
        exprs["group_scope"] = mapping.group_scope
    exprs.update({f"attributes.{k}": v for k, v in mapping.attributes.items()})
    for key, text in exprs.items():
        try:
            compile_expression(text)
        except ConfigError as exc:
            raise ConfigError(str(exc), file=file, key=f"mapping.{key}") from exc


_ANCHOR_REASON = (
    "is writeback's anchor (Group_<objectId>), which writeback writes itself: a mapped value would make it lose "
    "the groups it owns, or claim groups it does not (mapping.anchor chooses where the anchor goes)"
)
_BY_AD = "is set by AD when the group is created; no one writes it"
_PROTECTION = "marks AD's protected groups, which writeback never touches; a mapping must not set or clear it"
# Attributes [mapping.attributes] must not write, by lower-cased name (LDAP attribute names ignore case), and
# why. Each is written by writeback itself from a setting of its own, owned by AD, or a privilege.
RESERVED_ATTRIBUTES: Mapping[str, str] = {
    "msds-externaldirectoryobjectid": _ANCHOR_REASON,
    "admindescription": _ANCHOR_REASON,
    "member": "holds the cloud group's members, resolved to AD accounts by writeback; a mapping cannot set them",
    "memberof": "is computed by AD from other groups' member values (the cloud group's members decide them)",
    "objectsid": _BY_AD,
    "objectguid": _BY_AD,
    "objectclass": _BY_AD,
    "objectcategory": _BY_AD,
    "sidhistory": (
        "adds its SIDs to the logon token of every member: a mapped value would grant the rights of other "
        "accounts (privilege escalation)"
    ),
    "ntsecuritydescriptor": "holds the group's permissions, which are not writeback's to set",
    "admincount": _PROTECTION,
    "iscriticalsystemobject": _PROTECTION,
    "grouptype": "is the group's scope and kind: use mapping.group_scope (the cloud group decides its kind)",
    "samaccountname": "is derived by writeback, unique and valid: use mapping.sam_account_name",
    "cn": "is the group's name in its DN, changed by a rename: use mapping.cn (and mapping.target_ou)",
    "name": "is the group's name in its DN, changed by a rename: use mapping.cn (and mapping.target_ou)",
    "distinguishedname": "is where the group is: use mapping.cn and mapping.target_ou",
    "displayname": "has a setting of its own: use mapping.display_name",
    "description": "has a setting of its own: use mapping.description",
}


_BY_AD_USER = "is set by AD; no one writes it"
_PROTECTED_USER = "marks AD's protected accounts, which writeback never touches"
_USER_NAMING = "names the account (an SOA user keeps its account's names: writeback never renames an account it takes over)"
_CREDENTIAL = (
    "is a sign-in credential or delegation of the account: a mapped value would let the cloud take it over"
)
# Attributes [users.attributes] must not write, by lower-cased name, and why.
RESERVED_USER_ATTRIBUTES: Mapping[str, str] = {
    "msds-externaldirectoryobjectid": "is writeback's anchor (User_<objectId>), which writeback writes itself",
    "admindescription": (
        "makes Entra Connect's inbound rules skip the account when it starts with User_; writeback leaves it alone"
    ),
    "cn": _USER_NAMING,
    "name": _USER_NAMING,
    "samaccountname": _USER_NAMING,
    "userprincipalname": _USER_NAMING,
    "distinguishedname": _USER_NAMING,
    "unicodepwd": "is the password: writeback never writes an SOA user's password",
    "userpassword": "is the password: writeback never writes an SOA user's password",
    "pwdlastset": "is the password's state: writeback never writes an SOA user's password",
    "useraccountcontrol": "enables, disables and sets the sign-in rules of the account; soa never changes them",
    "objectsid": _BY_AD_USER,
    "objectguid": _BY_AD_USER,
    "objectclass": _BY_AD_USER,
    "objectcategory": _BY_AD_USER,
    "primarygroupid": "is the account's primary group membership, which is not writeback's to set",
    "member": "is a group attribute",
    "memberof": "is computed by AD from groups' member values",
    "sidhistory": "adds SIDs to the account's logon token: a mapped value would grant other accounts' rights",
    "ntsecuritydescriptor": "holds the account's permissions, which are not writeback's to set",
    "admincount": _PROTECTED_USER,
    "iscriticalsystemobject": _PROTECTED_USER,
    "altsecurityidentities": _CREDENTIAL,
    "msds-keycredentiallink": _CREDENTIAL,
    "serviceprincipalname": _CREDENTIAL,
    "msds-allowedtodelegateto": _CREDENTIAL,
    "msds-allowedtoactonbehalfofotheridentity": _CREDENTIAL,
    "scriptpath": "runs at the account's logon: a mapped value would run code on the user's computer",
    "manager": "is a reference to another AD account, not resolved by this version of writeback",
}


def _check_mapped_attributes(mapping: MappingSettings, file: str) -> None:
    """Refuse a [mapping.attributes] entry that targets an attribute of :data:`RESERVED_ATTRIBUTES`."""
    for name in mapping.attributes:
        if reason := RESERVED_ATTRIBUTES.get(name.lower()):
            raise ConfigError(
                f"cannot be mapped: {name} {reason}", file=file, key=f"mapping.attributes.{name}"
            )


def load_settings(path: str | Path) -> Settings:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "file not found (create one, or run `writeback sandbox up` for a ready example)", file=str(p)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    try:
        root = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(p)) from exc
    return parse_settings(root, str(p))


def resolve_secret(ref: SecretRef, what: str) -> str:
    """Read a secret from its environment variable or file. Errors say where it was looked for, not its value."""
    if ref.env:
        value = os.environ.get(ref.env)
        if not value:
            raise ConfigError(f"{what}: environment variable {ref.env} is not set or empty")
        return value
    if ref.file:
        try:
            return Path(ref.file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read secret file {ref.file}: {exc.strerror}") from exc
    raise ConfigError(f"{what}: no secret configured")
