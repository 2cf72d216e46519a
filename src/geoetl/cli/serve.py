"""``geoetl serve``: the API, N local worker processes and the janitor, together."""

from __future__ import annotations

import logging
import threading

import uvicorn

from geoetl.api.app import create_app
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import WorkerPool, make_janitor

log = logging.getLogger(__name__)


def run_server(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve until interrupted, then stop workers and the janitor cleanly."""
    # Migrate once here, before workers and the app race to do it.
    janitor_platform = Platform.from_settings(settings)
    stop = threading.Event()
    pool = WorkerPool(settings, workers) if workers else None
    if pool:
        pool.start()
        threading.Thread(target=pool.supervise, args=(stop,), daemon=True).start()
    janitor = threading.Thread(
        target=make_janitor(janitor_platform).run_forever, args=(stop,), daemon=True
    )
    janitor.start()
    try:
        # Forwarded headers are geoetl's to judge (GEOETL_TRUSTED_PROXIES, EdgeMiddleware):
        # uvicorn's own handling would trust any local client's X-Forwarded-Proto.
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level="info",
            proxy_headers=False,
            server_header=False,
        )
    finally:
        stop.set()
        if pool:
            pool.stop()
        janitor.join(timeout=10)
        janitor_platform.close()
