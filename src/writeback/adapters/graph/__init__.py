"""Microsoft Graph adapter: MSAL client-credentials auth, httpx with Graph's retry rules, delta sync.

The only package that imports msal and httpx for the cloud side. Use::

    client = GraphClient(GraphSettings(tenant_id=..., client_id=..., client_secret=...))
    report = GraphSource(client).sync(replica)
"""

from writeback.adapters.graph.client import GraphClient
from writeback.adapters.graph.delta import GraphSource
from writeback.adapters.graph.settings import DEFAULT_USER_SELECT, GROUP_SELECT, GraphSettings

__all__ = ["DEFAULT_USER_SELECT", "GROUP_SELECT", "GraphClient", "GraphSettings", "GraphSource"]
