"""`python -m api`: the API on $API_HOST:$API_PORT (127.0.0.1:3000) under gunicorn, 2 workers.

Gunicorn runs in this process (no `exec`), so the pid the stack scripts keep is
gunicorn's master: SIGTERM stops it gracefully. Each worker makes its own app
(engine, store pool, producer): nothing made before the fork is shared. Without
gunicorn (a bare checkout), Flask's threaded development server serves instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import tempfile
from typing import Any

from adapters import logs  # nothing of prometheus_client: see _prepare_multiprocess
from river.errors import RiverError
from river.settings import Settings

WORKERS = 2  # this machine kind has 2 cores
PR_SET_PDEATHSIG = 1


def main() -> None:
    metrics_folder = None
    if _gunicorn_available() and _metrics_port():
        # Before prometheus_client is imported: the workers count into files there.
        metrics_folder = _prepare_multiprocess()
    logs.configure_logging("api")  # LOG_LEVEL, LOG_FORMAT; gunicorn's own logs below
    try:
        settings = Settings.load()
        from api.auth import check_mode

        check_mode(settings)  # API_AUTH=none off loopback: refused here, in one sentence
        # Wrong settings (a missing mapping file...) end here with one sentence, not in
        # each worker with a trace. The import also warms the modules the workers inherit.
        from river.engine import Engine

        engine = Engine.from_settings(settings)  # connects to nothing: sources open on first use
    except RiverError as error:
        print(f"api: {error}", file=sys.stderr)
        sys.exit(1)
    bind = f"{settings.api_host}:{settings.api_port}"
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        from api.app import create_app

        logging.getLogger("river.api").warning(
            "gunicorn is not installed: serving with Flask's development server on %s", bind
        )
        from api.metrics import serve_single

        serve_single(settings, engine)
        create_app(settings).run(host=settings.api_host, port=settings.api_port, threaded=True)
        return

    class Server(BaseApplication):  # type: ignore[misc]
        def __init__(self, options: dict[str, Any]) -> None:
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Called in each worker after the fork.
            from api.app import create_app

            return create_app()

    Server(
        {
            "bind": bind,
            "workers": int(os.environ.get("API_WORKERS", WORKERS)),
            "worker_class": "sync",
            # A batch waits up to ~12 s for Kafka's acknowledgement before its 503.
            "timeout": 60,
            "graceful_timeout": 20,
            "post_fork": _die_with_the_master,
            **(_metrics_hooks(settings, engine) if metrics_folder else {}),
            **logs.gunicorn_options(),
        }
    ).run()
    if metrics_folder:
        from api.metrics import remove_multiprocess

        remove_multiprocess(metrics_folder)


def _prepare_multiprocess() -> str:
    """A fresh folder where each worker writes its metrics' values for the master to add
    up (PROMETHEUS_MULTIPROC_DIR: made here unless set; emptied either way). It must be
    set before anything imports prometheus_client: this module imports nothing of it."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))
    else:
        folder = tempfile.mkdtemp(prefix="fhir-river-api-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def _metrics_port() -> int:
    try:
        return Settings.load().metrics_port_api
    except RiverError:
        return 0  # said below, in one sentence


def _gunicorn_available() -> bool:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


def _metrics_hooks(settings: Settings, engine: Any) -> dict[str, Any]:
    """The master serves the workers' metrics added up (METRICS_PORT_API), once it
    is ready; a worker that exits leaves its counters and takes its gauges."""
    from api.metrics import serve_gunicorn, worker_exited

    return {
        "when_ready": lambda server: serve_gunicorn(settings, engine),
        "child_exit": lambda server, worker: worker_exited(worker.pid),
    }


def _die_with_the_master(server: Any, worker: Any) -> None:
    """Ask Linux to SIGTERM this worker when the master dies.

    Without it, a SIGKILLed master leaves its workers serving the old socket for
    up to half the worker timeout, and the master started next cannot bind the port.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the worker notices on its next loop
        return
    if os.getppid() != worker.ppid:  # the master died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    main()
