"""Project-wide pytest fixtures: the sandbox test bed (see tests/testbed/fixtures.py)."""

from tests.testbed.fixtures import ldap_conn, postgres_server, postgres_url, sandbox, sandbox_graph, test_ou

__all__ = ["ldap_conn", "postgres_server", "postgres_url", "sandbox", "sandbox_graph", "test_ou"]
