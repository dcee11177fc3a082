"""One bound LDAP connection with failover, TLS that is always verified, and the reconnect policy.

Why a class of its own: the domain and the Global Catalog need the same treatment (options, bind, paging,
error translation, counting), and the reconnect rule differs for reads and writes:

- a read that hits SERVER_DOWN reconnects (to the next reachable DC) and is retried once, since it has no
  effect on the directory;
- a write that hits SERVER_DOWN is not retried: the server may or may not have applied it. The session
  reconnects so the next call works, and raises :class:`DirectoryUnavailable` so the caller re-reads and
  decides.

TLS options are set on each connection object, never globally, and ``OPT_X_TLS_NEWCTX`` comes last so the
connection gets a TLS context built from exactly those options.

The bind is a simple bind, or with ``auth = "kerberos"`` SASL GSSAPI (kerberos.py gets the ticket):

- on ``ldap://`` (389) the SASL security layer must sign and seal: ``OPT_X_SASL_SSF_MIN`` is
  :data:`SEAL_SSF` (128, the key length Active Directory asks of a connection that writes unicodePwd, MS-ADTS
  3.1.1.3.1.5.1), so Cyrus SASL fails the bind rather than settle for less, and the SSF negotiated is
  checked again after the bind. No StartTLS there: AD refuses a SASL layer inside TLS (MS-ADTS 5.1.2.2);
- on ``ldaps://`` the bind asks for no SASL layer (``OPT_X_SASL_SSF_MAX`` 0), for the same reason; TLS
  protects the connection;
- ``OPT_X_SASL_NOCANON``: the service principal is ``ldap/<host of the URL>`` as written, not whatever a
  reverse DNS lookup of the address says, so the SPN the DC must have is predictable (and config check names
  it when it is missing);
- a Windows DC drops an LDAP connection when the Kerberos ticket it was bound with expires, so the session
  binds again, with a renewed ticket, shortly before then (the ticket's ``margin``, :data:`kerberos.RENEW_MARGIN`).

Paged reads of very large directories follow Windows Server's LDAP policies (KB 315071, "View and set LDAP
policy in Active Directory by using Ntdsutil.exe"; MS-ADTS 3.1.1.3.4.6 "LDAP Policies"):

- MaxQueryDuration (default 120 s) bounds the time the DC spends on *one* search request, and with the paged
  results control every page is its own request. The client therefore waits for each page at least that long
  (plus a margin), however small ``timeout`` is, and the wait starts again with every page: a read of a
  million memberships takes as long as it takes, and only a page the DC itself could not finish ends it.
- When the DC does give up on a page (timeLimitExceeded, result 3), the page is asked again from the same
  cookie with half the page size, down to :data:`MIN_PAGE_SIZE`, since a busy DC finishes a smaller page
  sooner. RFC 2696 section 3 lets the client change the page size from one request to the next.
- MaxPageSize (default 1,000) caps the entries of one page; a search without the paged results control is
  answered with sizeLimitExceeded (result 4) beyond it, so every search that may return more is paged.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import ldap
import ldap.sasl
from ldap.controls import RequestControl, SimplePagedResultsControl

from writeback.adapters.directory.kerberos import (
    HostTicket,
    KeytabTicket,
    Ticket,
    kerberos_error,
)
from writeback.adapters.directory.settings import DirectorySettings
from writeback.adapters.directory.tlscheck import certificate_problem
from writeback.adapters.directory.translate import result_name, server_message, tls_hint, translate_ldap_error
from writeback.errors import ConfigError, DirectoryError, DirectoryUnavailable, WritebackError

log = logging.getLogger(__name__)

T = TypeVar("T")
Entry = tuple[str, dict[str, list[bytes]]]

# Connect failures that are plainly the network's (no TLS handshake happened): not worth a certificate check.
_NETWORK_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH}
)
STAT_KEYS = ("bind", "search", "add", "modify", "modrdn", "delete", "values_written")
# Windows Server's default MaxQueryDuration (KB 315071): the longest a DC works on one search request (page).
MAX_QUERY_DURATION = 120.0
# Added to MaxQueryDuration for the network and the DC's queue before the client gives up waiting for a page.
PAGE_WAIT_MARGIN = 30.0
# The smallest page asked for after the DC answered timeLimitExceeded; below this the read fails.
MIN_PAGE_SIZE = 50
Connect = Callable[[str], Any]
# The SASL security strength (Cyrus SSF: the key length in bits) a Kerberos bind on ldap:// must reach: 1 would
# be integrity only; AD takes unicodePwd over "128-bit (or better) SASL-layer encryption" (MS-ADTS 3.1.1.3.1.5.1).
SEAL_SSF = 128


def new_ticket(settings: DirectorySettings) -> Ticket | None:
    """Where a Kerberos bind's ticket comes from (None for a simple bind)."""
    if not settings.kerberos:
        return None
    if settings.keytab:
        return KeytabTicket(settings.principal or "", settings.keytab)
    return HostTicket(settings.principal)


def page_wait(timeout: float) -> float:
    """Seconds the client waits for one page: never less than the DC's own limit for it (MaxQueryDuration)."""
    return max(timeout, MAX_QUERY_DURATION + PAGE_WAIT_MARGIN)


class LdapSession:
    """A lazily opened, bound connection to the first reachable URL of ``urls``.

    ``stats`` is shared with the adapter so every operation is counted once, whichever session ran it.
    Not thread-safe: one session serves one engine pass at a time.
    """

    def __init__(
        self,
        settings: DirectorySettings,
        urls: Sequence[str],
        stats: Counter[str],
        label: str,
        connect: Connect = ldap.initialize,
        timings: dict[str, float] | None = None,
        ticket: Ticket | None = None,
    ) -> None:
        """``timings`` (shared with the adapter like ``stats``) accumulates the seconds spent in reads
        ("ad_read") and writes ("ad_write"), connecting included. ``ticket`` gives a Kerberos bind its
        credentials (shared by the domain and Global Catalog sessions; the adapter closes it)."""
        self._settings = settings
        self._ticket = ticket
        self._rebind_at: float | None = None  # a Kerberos bind: when to bind again (its ticket runs out)
        self._protection = ""
        self.timings = timings if timings is not None else {}
        self._connect = connect
        self._urls = tuple(urls)
        self._stats = stats
        self._label = label
        self._conn: Any = None
        self._url: str | None = None
        self._warned_plain: set[str] = set()

    @property
    def url(self) -> str | None:
        """The URL of the server currently connected, if any."""
        return self._url

    @property
    def protection(self) -> str:
        """How the open connection is protected: "tls", "kerberos-sealed (SSF n)" or "none" ("" when closed)."""
        return self._protection if self._conn is not None else ""

    @property
    def encrypted(self) -> bool:
        """Whether the open connection is encrypted well enough for a password (MS-ADTS 3.1.1.3.1.5.1: TLS, or
        a SASL layer of 128 bits or more)."""
        return self._conn is not None and (
            self._protection == "tls" or self._protection.startswith("kerberos-")
        )

    # -- connecting ---------------------------------------------------------------------------------------

    def connection(self) -> Any:
        """The bound connection, opened on first use (servers tried in order)."""
        if self._conn is not None and self._rebind_at is not None and time.time() >= self._rebind_at:
            log.info(
                "%s %s: the Kerberos ticket of this bind expires soon; binding again", self._label, self._url
            )
            self.close()
        if self._conn is None:
            self._conn, self._url = self._open_any()
        return self._conn

    def close(self) -> None:
        conn, self._conn, self._url, self._rebind_at = self._conn, None, None, None
        if conn is not None:
            _quiet_unbind(conn)

    def _open_any(self) -> tuple[Any, str]:
        failures: list[DirectoryUnavailable] = []
        for url in self._urls:
            try:
                return self._open(url), url
            except DirectoryUnavailable as exc:
                log.warning("%s %s unavailable: %s", self._label, url, exc)
                failures.append(exc)
        if len(failures) == 1:
            raise DirectoryUnavailable(f"{self._label}: {failures[0]}") from failures[0]
        detail = "; ".join(str(f) for f in failures)
        raise DirectoryUnavailable(f"no {self._label} server reachable ({detail})")

    def _open(self, url: str) -> Any:
        s = self._settings
        conn = self._connect(url)
        try:
            conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
            # AD hands out referrals to other partitions; chasing them would re-bind elsewhere unnoticed.
            conn.set_option(ldap.OPT_REFERRALS, 0)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, s.timeout)
            conn.set_option(ldap.OPT_TIMEOUT, s.timeout)
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            conn.set_option(ldap.OPT_X_TLS_PROTOCOL_MIN, ldap.OPT_X_TLS_PROTOCOL_TLS1_2)
            if s.ca_file:
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(s.ca_file))
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # last: builds the context from the options above
            conn.timeout = s.timeout  # python-ldap's wait for each synchronous result
            if s.kerberos:
                self._stats["bind"] += 1
                try:
                    self._kerberos_bind(conn, url)
                except WritebackError:
                    self._stats["bind_errors"] += 1
                    _quiet_unbind(conn)
                    raise
                return conn
            self._protection = "tls"
            if urlsplit(url).scheme.lower() == "ldap":
                if not s.allow_insecure:
                    conn.start_tls_s()
                elif url not in self._warned_plain:  # once per URL and session: each start says it again
                    self._protection = "none"
                    self._warned_plain.add(url)
                    log.warning(
                        "%s %s: plain LDAP without TLS (target.insecure_plain_ldap = true): the bind password "
                        "and directory data cross the network unencrypted; use ldaps:// or drop "
                        "insecure_plain_ldap to use StartTLS",
                        self._label,
                        url,
                        extra={"event": "plain_ldap", "url": url},
                    )
                else:
                    self._protection = "none"
            self._stats["bind"] += 1
            conn.simple_bind_s(s.bind_dn, s.bind_password)
        except ldap.LDAPError as exc:
            self._stats["bind_errors"] += 1
            _quiet_unbind(conn)
            problem = self._certificate_problem(exc, url)
            if problem:
                raise DirectoryUnavailable(f"{tls_hint(url)} ({problem})") from exc
            raise translate_ldap_error(
                exc, action="connect", url=url, bind_dn=s.bind_dn, secret=s.bind_password
            ) from exc
        except (ValueError, OSError) as exc:
            # python-ldap reports an unreadable CA file as a bare "option error", before any network traffic.
            _quiet_unbind(conn)
            if s.ca_file and not os.access(s.ca_file, os.R_OK):
                raise ConfigError(
                    f"the CA file {s.ca_file} does not exist or is not readable", key="ca_file"
                ) from exc
            raise DirectoryUnavailable(f"cannot set up TLS for {url}: {exc}") from exc
        return conn

    def _kerberos_bind(self, conn: Any, url: str) -> None:
        """SASL GSSAPI: sealed on ldap://, inside TLS without a SASL layer on ldaps:// (module docstring)."""
        s = self._settings
        ticket = self._ticket
        if ticket is None:
            raise ConfigError('auth = "kerberos" needs a ticket source', key="target.auth")
        expires = ticket.ensure()
        tls = urlsplit(url).scheme.lower() == "ldaps"
        conn.set_option(ldap.OPT_X_SASL_NOCANON, 1)
        if tls:
            conn.set_option(ldap.OPT_X_SASL_SSF_MAX, 0)
        else:
            conn.set_option(ldap.OPT_X_SASL_SSF_MIN, SEAL_SSF)
        try:
            conn.sasl_interactive_bind_s("", ldap.sasl.gssapi(""))
        except ldap.LDAPError as exc:
            if tls and self._certificate_problem(exc, url):
                raise
            if isinstance(exc, ldap.SERVER_DOWN) and _errno(exc) in _NETWORK_ERRNOS:
                raise
            raise kerberos_error(
                server_message_of(exc), principal=ticket.principal or s.principal, url=url
            ) from exc
        if tls:
            self._protection = "tls"
        else:
            ssf = int(conn.get_option(ldap.OPT_X_SASL_SSF) or 0)
            if ssf < SEAL_SSF:
                _quiet_unbind(conn)
                raise kerberos_error(
                    f"SASL security layer too weak: SSF {ssf} negotiated, {SEAL_SSF} required",
                    principal=ticket.principal,
                    url=url,
                )
            self._protection = f"kerberos-sealed (SSF {ssf})"
        self._rebind_at = expires - ticket.margin if expires else None

    def _certificate_problem(self, exc: ldap.LDAPError, url: str) -> str | None:
        """The certificate's fault, when a TLS connect failed for no network reason (see tlscheck)."""
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        s = self._settings
        uses_tls = urlsplit(url).scheme.lower() == "ldaps" or not (s.allow_insecure or s.kerberos)
        if not uses_tls or detail.get("errno") in _NETWORK_ERRNOS:
            return None
        if not isinstance(exc, ldap.SERVER_DOWN | ldap.CONNECT_ERROR):
            return None
        ca_file = str(self._settings.ca_file) if self._settings.ca_file else None
        return certificate_problem(url, ca_file, self._settings.timeout)

    # -- running operations -------------------------------------------------------------------------------

    def read(self, action: str, fn: Callable[[Any], T], dn: str | None = None) -> T:
        """Run a read; on a lost connection reconnect (failover) and retry it once."""
        started = time.perf_counter()
        try:
            return self._read(action, fn, dn)
        finally:
            self._add_time("ad_read", time.perf_counter() - started)

    def _add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def _read(self, action: str, fn: Callable[[Any], T], dn: str | None) -> T:
        for attempt in (1, 2):
            conn = self.connection()
            try:
                return fn(conn)
            except ldap.SERVER_DOWN as exc:
                url = self._url
                self.close()
                if attempt == 1:
                    log.warning("%s connection to %s lost during %s; reconnecting", self._label, url, action)
                    continue
                raise self._translate(exc, action, dn, write=False, url=url) from exc
            except ldap.LDAPError as exc:
                raise self._translate(exc, action, dn, write=False) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, action: str, fn: Callable[[Any], T], dn: str, *, deadline: float | None = None) -> T:
        """Run a write once, waiting at most ``deadline`` seconds for its answer (else ``timeout``). A lost
        connection is reopened, and reported as DirectoryUnavailable."""
        started = time.perf_counter()
        try:
            return self._write(action, fn, dn, deadline)
        finally:
            self._add_time("ad_write", time.perf_counter() - started)

    def _write(self, action: str, fn: Callable[[Any], T], dn: str, deadline: float | None = None) -> T:
        conn = self.connection()
        wait = self._settings.timeout if deadline is None else min(deadline, self._settings.timeout)
        # python-ldap's wait for this synchronous result (on expiry it abandons the request); reads keep theirs.
        conn.timeout = wait
        try:
            return fn(conn)
        except ldap.TIMEOUT as exc:
            raise DirectoryUnavailable(
                f"no answer to the {action} of {dn} within {wait:g} s; the change may or may not have been "
                "applied: the next plan reads the object again"
            ) from exc
        except ldap.SERVER_DOWN as exc:
            url = self._url
            self.close()
            try:
                self.connection()
            except DirectoryError as reconnect_exc:
                log.warning("%s reconnect after lost %s failed: %s", self._label, action, reconnect_exc)
            raise DirectoryUnavailable(
                f"connection to {url} lost during {action} of {dn}; the change may or may not have been "
                "applied: re-read the object before retrying"
            ) from exc
        except ldap.LDAPError as exc:
            raise self._translate(exc, action, dn, write=True) from exc
        finally:
            if self._conn is conn:
                conn.timeout = self._settings.timeout

    def _translate(
        self, exc: ldap.LDAPError, action: str, dn: str | None, *, write: bool, url: str | None = None
    ) -> DirectoryError:
        s = self._settings
        return translate_ldap_error(
            exc,
            action=action,
            url=url or self._url,
            dn=dn,
            write=write,
            bind_dn=s.bind_dn,
            secret=s.bind_password,
        )

    def count(self, kind: str, values: int = 0) -> None:
        self._stats[kind] += 1
        if values:
            self._stats["values_written"] += values

    # -- searching ----------------------------------------------------------------------------------------

    def search(
        self,
        base: str,
        scope: int,
        filterstr: str,
        attrs: Sequence[str] | None,
        *,
        paged: bool = True,
        missing_ok: bool = False,
        controls: Sequence[RequestControl] = (),
        each_page: Callable[[list[Entry]], None] | None = None,
    ) -> list[Entry]:
        """All entries of a search (referrals dropped). ``paged`` uses the Simple Paged Results control.

        ``missing_ok`` turns NO_SUCH_OBJECT (the base does not exist) into an empty result. ``controls`` are
        sent with every page. ``each_page``: each page's entries are handed to it as they arrive and not kept
        (the result is then empty), so a read of every user holds one page of raw entries at a time rather
        than all of them (issue 27, memory of one big group). A search retried after a lost connection starts
        again from its first page: what ``each_page`` does with a page must be harmless to repeat.
        """
        attrlist = list(attrs) if attrs is not None else None

        def run(conn: Any) -> list[Entry]:
            try:
                return self._search_pages(conn, base, scope, filterstr, attrlist, paged, controls, each_page)
            except ldap.NO_SUCH_OBJECT:
                if missing_ok:
                    return []
                raise

        try:
            return self.read("search", run, dn=base)
        except Exception:
            self._stats["search_errors"] += 1  # operations by result (the console's metrics)
            raise

    def _search_pages(
        self,
        conn: Any,
        base: str,
        scope: int,
        filterstr: str,
        attrlist: list[str] | None,
        paged: bool,
        extra: Sequence[RequestControl] = (),
        each_page: Callable[[list[Entry]], None] | None = None,
    ) -> list[Entry]:
        entries: list[Entry] = []
        size = self._settings.page_size
        cookie = b""
        # A base or one-level read is quick on any DC: a short wait finds a hung DC sooner (failover).
        wait = page_wait(self._settings.timeout) if paged else self._settings.timeout
        while True:
            self._stats["search"] += 1
            control = SimplePagedResultsControl(True, size=size, cookie=cookie)
            serverctrls = [*extra, control] if paged else list(extra)
            msgid = conn.search_ext(base, scope, filterstr, attrlist, serverctrls=serverctrls or None)
            try:
                _rtype, rdata, _msgid, controls = conn.result3(msgid, all=1, timeout=wait)
            except ldap.TIMELIMIT_EXCEEDED as exc:
                # The DC stopped this page at MaxQueryDuration: ask again from the same cookie, smaller.
                if not paged or size <= MIN_PAGE_SIZE:
                    raise DirectoryUnavailable(
                        f"search under {base} on {self._url}: the DC stopped even a page of {size} entries "
                        f"at its time limit (MaxQueryDuration); retry when the DC is less busy, or raise "
                        f'MaxQueryDuration (ntdsutil "ldap policies")'
                    ) from exc
                size = max(MIN_PAGE_SIZE, size // 2)
                log.warning(
                    "%s %s: a page of the search under %s exceeded the DC's time limit; retrying with pages "
                    "of %d entries",
                    self._label,
                    self._url,
                    base,
                    size,
                )
                continue
            page = [(dn, attrs) for dn, attrs in rdata if dn is not None and isinstance(attrs, dict)]
            del rdata
            if each_page is not None:
                each_page(page)
            else:
                entries.extend(page)
            del page
            cookie = (_next_cookie(controls) if paged else None) or b""
            if not cookie:
                return entries


def _next_cookie(controls: Sequence[Any]) -> bytes | None:
    for control in controls or ():
        if control.controlType == SimplePagedResultsControl.controlType:
            return cast(bytes | None, control.cookie)
    return None


def _errno(exc: ldap.LDAPError) -> int | None:
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    value = detail.get("errno")
    return value if isinstance(value, int) else None


def server_message_of(exc: ldap.LDAPError) -> str:
    """The result name and server's diagnostic of a failed bind (no credentials in it: GSSAPI sends none)."""
    return f"{result_name(exc)}: {server_message(exc)}"


def _quiet_unbind(conn: Any) -> None:
    # The connection is already gone or never came up: there is nothing left to release.
    with contextlib.suppress(ldap.LDAPError):
        conn.unbind_s()


__all__ = [
    "MAX_QUERY_DURATION",
    "SEAL_SSF",
    "STAT_KEYS",
    "Connect",
    "Entry",
    "LdapSession",
    "new_ticket",
    "page_wait",
]
