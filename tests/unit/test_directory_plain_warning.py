"""Plain LDAP (ldap:// with insecure_plain_ldap, no StartTLS) logs a warning at every start."""

from __future__ import annotations

import logging
import socket
from collections import Counter

import pytest

from writeback.adapters.directory import DirectorySettings
from writeback.adapters.directory.connection import LdapSession
from writeback.errors import DirectoryError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attempt(url: str, *, insecure: bool) -> LdapSession:
    settings = DirectorySettings(
        urls=(url,), bind_dn="CN=svc,DC=corp,DC=test", bind_password="pw-never-logged",
        base_dn="DC=corp,DC=test", allow_insecure=insecure, timeout=2,
    )  # fmt: skip
    session = LdapSession(settings, settings.urls, Counter(), "DC")
    with pytest.raises(DirectoryError):
        session.connection()  # nothing listens: the connect fails after the decision to go plain
    return session


def plain_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.__dict__.get("event") == "plain_ldap"]


def test_plain_ldap_warns_at_each_start(caplog: pytest.LogCaptureFixture) -> None:
    url = f"ldap://127.0.0.1:{closed_port()}"
    with caplog.at_level(logging.WARNING, logger="writeback.directory"):
        session = attempt(url, insecure=True)
        with pytest.raises(DirectoryError):
            session.connection()  # a reconnect of the same session: said once is enough
        attempt(url, insecure=True)  # a new start says it again
    records = plain_warnings(caplog)
    assert len(records) == 2
    assert records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert f"DC {url}: plain LDAP without TLS (target.insecure_plain_ldap = true)" in message
    assert "pw-never-logged" not in caplog.text


def test_starttls_and_ldaps_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    with caplog.at_level(logging.WARNING, logger="writeback.directory"):
        attempt(f"ldap://127.0.0.1:{port}", insecure=False)
        attempt(f"ldaps://127.0.0.1:{port}", insecure=True)
    assert plain_warnings(caplog) == []
