"""Project-wide pytest fixtures: the sandbox test bed (see tests/testbed/fixtures.py)."""

from tests.testbed.fixtures import ldap_conn, sandbox, sandbox_graph, test_ou

__all__ = ["ldap_conn", "sandbox", "sandbox_graph", "test_ou"]
