"""Adapters at the edges: Microsoft Graph (msal, httpx), Active Directory (python-ldap), the state store."""
