"""The Kerberos bind (SASL GSSAPI) and hardened DCs, against the Windows double (tests/unit/ad_double.py,
"Hardened DCs"): what is sent on 389 and on 636, what a DC requiring signing or channel binding refuses, where
a password may be written, when the ticket is renewed, and what each Kerberos failure is diagnosed as."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import ldap
import pytest

from tests.unit.ad_double import WindowsDC
from tests.unit.test_directory_ranges import settings
from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.connection import SEAL_SSF
from writeback.adapters.directory.kerberos import RENEW_MARGIN, check_keytab, diagnose, kerberos_error
from writeback.errors import ConfigError, DirectoryAuthError, DirectoryUnavailable, DirectoryWriteError

USER = {"sAMAccountName": "julia", "userAccountControl": "512", "adminDescription": "User_x"}


class FakeTicket:
    """A ticket source with a chosen lifetime (a real one needs a KDC: tests/integration/test_kerberos.py)."""

    def __init__(self, lifetime: float = 36000.0) -> None:
        self.principal = "svc-writeback@CORP.TEST"
        self.margin = RENEW_MARGIN
        self.lifetime = lifetime
        self.ensured = 0
        self.closed = False

    def ensure(self) -> float:
        self.ensured += 1
        return time.time() + self.lifetime

    def close(self) -> None:
        self.closed = True


def kerberos(url: str = "ldap://dc1.corp.test", **kw: object):  # type: ignore[no-untyped-def]
    return settings(urls=(url,), bind_password="", auth="kerberos", principal="svc-writeback@CORP.TEST", **kw)


def opened(dc: WindowsDC, s, ticket: FakeTicket):  # type: ignore[no-untyped-def]
    conns = []

    def connect(url: str):  # type: ignore[no-untyped-def]
        conns.append(dc.connect(url))
        return conns[-1]

    d = LdapDirectory(s, connect=connect, ticket=ticket)
    return d, conns


def test_kerberos_on_389_is_sealed_without_starttls_and_may_write_a_password() -> None:
    dc = WindowsDC(require_signing=True)
    ticket = FakeTicket()
    d, conns = opened(dc, kerberos(), ticket)
    with d:
        d.check_tls_and_bind()
        (conn,) = conns
        assert conn.binds == ["sasl"] and not conn.tls  # no StartTLS: AD refuses a SASL layer inside TLS
        assert conn.options[ldap.OPT_X_SASL_SSF_MIN] == SEAL_SSF == 128
        assert conn.options[ldap.OPT_X_SASL_NOCANON] == 1
        assert d.protection == "kerberos-sealed (SSF 256)"
        d.create_user(f"CN=Julia,{dc.nc}", USER)  # unicodePwd over the sealed connection: AD takes it
    assert any(kind == "add" for kind, _ in dc.log)
    assert ticket.closed


def test_a_hardened_dc_refuses_a_simple_bind_on_389_and_the_error_names_kerberos() -> None:
    dc = WindowsDC(require_signing=True)
    plain = settings(urls=("ldap://dc1.corp.test",), allow_insecure=True)
    with LdapDirectory(plain, connect=dc.connect) as d, pytest.raises(DirectoryAuthError) as err:
        d.check_tls_and_bind()
    assert "STRONG_AUTH_REQUIRED" in str(err.value) and "00002028" in str(err.value)
    assert 'auth = "kerberos"' in str(err.value)
    # The same DC takes a simple bind after StartTLS.
    with LdapDirectory(settings(urls=("ldap://dc1.corp.test",)), connect=dc.connect) as d:
        d.check_tls_and_bind()
        assert d.protection == "tls"


def test_the_double_refuses_a_password_without_encryption_as_ad_does() -> None:
    dc = WindowsDC()
    conn = dc.connect("ldap://dc1.corp.test")
    conn.simple_bind_s("CN=a", "x")
    with pytest.raises(ldap.UNWILLING_TO_PERFORM, match="5003"):
        conn.add_ext_s(f"CN=J,{dc.nc}", [("objectClass", [b"user"]), ("unicodePwd", [b"x"])])
    conn.set_option(ldap.OPT_X_SASL_SSF_MAX, 1)  # integrity only: signed, not sealed
    conn.sasl_interactive_bind_s("", None)
    assert conn.get_option(ldap.OPT_X_SASL_SSF) == 1
    with pytest.raises(ldap.UNWILLING_TO_PERFORM):
        conn.modify_ext_s(f"CN=J,{dc.nc}", [(ldap.MOD_REPLACE, "unicodePwd", [b"x"])])


def test_a_bind_that_only_signs_is_not_taken_for_encrypted() -> None:
    # Were Cyrus to settle below the minimum, the session still refuses the connection: SSF is checked again.
    dc = WindowsDC()

    def integrity_only(url: str):  # type: ignore[no-untyped-def]
        conn = dc.connect(url)
        conn.options[ldap.OPT_X_SASL_SSF_MAX] = 1  # as an ldap.conf SASL_SECPROPS maxssf=1 would
        conn.set_option = lambda o, v: conn.options.setdefault(o, 0 if o == ldap.OPT_X_SASL_SSF_MIN else v)  # type: ignore[method-assign]
        return conn

    with LdapDirectory(kerberos(), connect=integrity_only, ticket=FakeTicket()) as d:
        with pytest.raises(DirectoryAuthError) as err:
            d.check_tls_and_bind()
        assert d.protection == ""
    assert "SSF 1 negotiated, 128 required" in str(err.value) and "signed and sealed" in str(err.value)


def test_kerberos_over_ldaps_asks_for_no_sasl_layer_and_channel_binding_two_names_the_mode_that_works() -> (
    None
):
    for enforce, works in ((0, True), (1, True), (2, False)):
        dc = WindowsDC(channel_binding=enforce)
        d, conns = opened(dc, kerberos("ldaps://dc1.corp.test"), FakeTicket())
        with d:
            if works:
                d.check_tls_and_bind()
                assert conns[0].options[ldap.OPT_X_SASL_SSF_MAX] == 0
                assert d.protection == "tls"
                d.create_user(f"CN=Julia{enforce},{dc.nc}", USER)
            else:
                with pytest.raises(DirectoryAuthError) as err:
                    d.check_tls_and_bind()
                text = str(err.value)
                assert "channel binding" in text and "LdapEnforceChannelBinding = 2" in text
                assert "use an ldap:// URL (port 389)" in text and "80090346" in text


def test_the_ticket_is_renewed_and_the_connection_bound_again_before_the_ticket_expires() -> None:
    dc = WindowsDC()
    ticket = FakeTicket(lifetime=RENEW_MARGIN + 0.5)
    d, conns = opened(dc, kerberos(), ticket)
    with d:
        assert d.existing_dns([dc.nc]) == {dc.nc}
        assert (ticket.ensured, len(conns)) == (1, 1)
        time.sleep(0.6)  # the ticket is now within RENEW_MARGIN of its end
        assert d.existing_dns([dc.nc]) == {dc.nc}
        assert (ticket.ensured, len(conns)) == (2, 2)
        assert d.stats["bind"] == 2


def test_simple_bind_unchanged_and_plain_ldap_still_refused_for_passwords() -> None:
    dc = WindowsDC()
    plain = settings(urls=("ldap://dc1.corp.test",), allow_insecure=True)
    with LdapDirectory(plain, connect=dc.connect) as d:
        with pytest.raises(DirectoryWriteError) as err:
            d.create_user(f"CN=Julia,{dc.nc}", USER)
        assert d.protection == "none"
    assert 'auth = "kerberos"' in str(err.value)
    assert not any(kind == "add" for kind, _ in dc.log)


# -- what each failure is diagnosed as (messages as MIT krb5, Cyrus SASL and AD word them) -------------------

MESSAGES = {
    "kdc": "SASL(-1): generic failure: GSSAPI Error: Unspecified GSS failure.  Minor code may provide more "
    "information (Cannot contact any KDC for realm 'CORP.EXAMPLE.TEST')",
    "skew": "Major (458752): No credentials were supplied, or the credentials were unavailable or inaccessible, "
    "Minor (2529638949): Clock skew too great",
    "client": "Major (851968): Unspecified GSS failure.  Minor code may provide more information, Minor "
    "(2529638918): Client 'nobody@CORP.EXAMPLE.TEST' not found in Kerberos database",
    "kvno": "Major (851968): Unspecified GSS failure.  Minor code may provide more information, Minor "
    "(2529638936): Preauthentication failed",
    "spn": "SASL(-1): generic failure: GSSAPI Error: Unspecified GSS failure.  Minor code may provide more "
    "information (Server ldap/127.0.0.1@CORP.EXAMPLE.TEST not found in Kerberos database)",
    "keytab": "Major (851968): Unspecified GSS failure.  Minor code may provide more information, Minor "
    "(2529639053): No key table entry found for svc@CORP.EXAMPLE.TEST",
    "seal": "SASL(-15): mechanism too weak for this user",
    "expired": "SASL(-1): generic failure: GSSAPI Error: Unspecified GSS failure.  Minor code may provide more "
    "information (Ticket expired)",
    "cbt": "80090346: LdapErr: DSID-0C090749, comment: AcceptSecurityContext error, data 80090346, v4563",
}


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("kdc", "port 88"),
        ("skew", "synchronise this host's clock"),
        ("client", "check target.principal"),
        ("kvno", "export the keytab again"),
        ("spn", "setspn -S ldap/<host>"),
        ("keytab", "klist -k"),
        ("seal", "signed and sealed"),
        ("cbt", "use an ldap:// URL (port 389)"),
        ("expired", "renewed by the host"),
    ],
)
def test_each_kerberos_failure_says_what_to_fix(case: str, words: str) -> None:
    found = diagnose(MESSAGES[case])
    assert found is not None and words in str(found)
    err = kerberos_error(MESSAGES[case], principal="svc@CORP.EXAMPLE.TEST", url="ldap://dc1:389")
    assert words in str(err) and "svc@CORP.EXAMPLE.TEST" in str(err) and "ldap://dc1:389" in str(err)
    # Only the network's failure is worth retrying; the others need the operator.
    assert isinstance(err, DirectoryUnavailable if case == "kdc" else DirectoryAuthError)


def test_an_unknown_failure_is_reported_as_it_came() -> None:
    assert diagnose("something else entirely") is None
    assert "something else" in str(kerberos_error("something else", principal=None))


def test_the_keytab_must_be_a_private_readable_keytab(tmp_path: Path) -> None:
    keytab = tmp_path / "svc.keytab"
    with pytest.raises(ConfigError, match="cannot be read"):
        check_keytab(str(keytab))
    keytab.write_bytes(b"\x05\x02rest")
    os.chmod(keytab, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        check_keytab(str(keytab))
    os.chmod(keytab, 0o600)
    check_keytab(str(keytab))
    assert stat.S_IMODE(keytab.stat().st_mode) == 0o600
    keytab.write_bytes(b"not a keytab")
    with pytest.raises(ConfigError, match="is not a keytab"):
        check_keytab(str(keytab))
