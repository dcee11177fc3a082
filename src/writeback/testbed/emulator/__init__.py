"""A stateful fake of the Microsoft Graph endpoints writeback needs.

The emulator speaks Graph's wire format as Microsoft documents it (OAuth2 client credentials, OData reads,
delta queries, writes, soft deletes, throttling) so that client code written from the documentation runs
against it unchanged, and so that tests can play the cloud administrator.

Modules, from the bottom up:

- :mod:`.apierror`   Graph's error body and the exception that carries it through the emulator.
- :mod:`.tenant`     the tenant state (users, groups, members, deleted items, change log); no HTTP.
- :mod:`.odata`      ``$select``, ``$top``, ``$filter`` parsing and object rendering.
- :mod:`.delta`      delta rounds built from the change log, opaque state tokens.
- :mod:`.auth`       the token endpoint, OpenID configuration, access-token checks.
- :mod:`.faults`     throttling, 503s, latency and dropped connections on demand; request statistics.
- :mod:`.graph_api`  the Graph routes; :mod:`.admin` the ``/_emulator`` admin routes; :mod:`.app` wiring.
- :mod:`.server`     ``python -m writeback.testbed.emulator serve``; :mod:`.testing` ``run_emulator`` for tests.

Nothing is imported here on purpose: importing the package must stay cheap and free of side effects.
"""
