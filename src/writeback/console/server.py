"""Serve the console in the service's process: uvicorn on a thread of its own, on ``service.listen``.

HTTPS when ``console.certificate_file`` is set (uvicorn's ssl options); the config loader refuses a
non-loopback address without TLS unless ``console.allow_insecure_http`` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import uvicorn

from writeback.app.metrics import ServiceMetrics
from writeback.app.service import Service
from writeback.app.wiring import build_store
from writeback.config import Settings
from writeback.console.app import Console
from writeback.console.auth import Authenticator, load_tokens
from writeback.console.backend import ServiceBackend
from writeback.errors import ConfigError

log = logging.getLogger("writeback.console")


def build(service: Service) -> Console:
    """The console over ``service``; registers its metrics with the service's cycle observers."""
    settings = service.settings
    if not settings.console.tokens_file:
        raise ConfigError(
            "service.listen is set but console.tokens_file is not: the console needs sign-in tokens "
            "(lines 'NAME ROLE sha256:HEX'; see docs/service.md)",
            file=settings.path,
            key="console.tokens_file",
        )
    load_tokens(settings.console.tokens_file)  # a bad tokens file fails at start, not at the first sign-in
    auth = Authenticator(settings.console.tokens_file)

    def counts() -> dict[str, int]:
        store = build_store(settings)
        try:
            return {"managed_groups": len(store.applied_dns())}
        finally:
            store.close()

    metrics = ServiceMetrics(lambda: service.health, counts)
    service.on_cycle.append(metrics.observe)
    service.on_cycle.append(Retention(settings, settings.console.log_retention_days).observe)
    service.interactive = True
    return Console(ServiceBackend(service, metrics), auth, https=bool(settings.console.certificate_file))


class Retention:
    """Deletes provisioning log rows older than ``console.log_retention_days``, at most once an hour (after a
    cycle, on the service's thread)."""

    def __init__(self, settings: Settings, days: float) -> None:
        self.settings, self.days, self.last = settings, days, 0.0

    def observe(self, health: object, ok: bool) -> None:
        now = time.time()
        if not self.days or now - self.last < 3600:
            return
        self.last = now
        store = build_store(self.settings)
        try:
            removed = store.prune_log(now - self.days * 86400)
        finally:
            store.close()
        if removed:
            log.info("deleted %d provisioning log rows older than %g days", removed, self.days)


def start(service: Service) -> Callable[[], None]:
    """Start serving; returns the function that stops the server."""
    settings = service.settings
    assert settings.service.listen
    host, _, port = settings.service.listen.rpartition(":")
    console = build(service)
    config = uvicorn.Config(
        console.app,
        host=host.strip("[]"),
        port=int(port),
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's records go to the service's handler: one JSON object per line
        ssl_certfile=settings.console.certificate_file,
        ssl_keyfile=settings.console.private_key_file,
        lifespan="off",
    )
    server = uvicorn.Server(config)  # on a thread: uvicorn leaves signal handling to the service
    thread = threading.Thread(target=server.run, name="writeback-console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise ConfigError(
            f"the console could not listen on {settings.service.listen} (in use, or not an address of this "
            "host?): pick another service.listen",
            file=settings.path,
            key="service.listen",
        )
    scheme = "https" if settings.console.certificate_file else "http"
    log.info("console at %s://%s", scheme, settings.service.listen, extra={"event": "console"})

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop
