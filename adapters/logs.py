"""How FHIR River's processes log: the one place that sets logging up, for the three
services and the API (gunicorn's own logs included), from LOG_LEVEL and LOG_FORMAT.

    from adapters import logs
    logs.configure_logging("extractor")
    with logs.about(batch_id, resource_id):    # the lines logged inside name them
        ...

LOG_FORMAT=text (the default), one line for people:

    2026-12-05 21:53:06,123 extractor[4242] INFO batch 1f0c..., resource example-patient: ...

LOG_FORMAT=json, one JSON object per line for a log shipper (Loki, Fluent Bit, Vector):

    {"time": "2026-12-05T21:53:06.123Z", "level": "INFO", "service": "extractor",
     "pid": 4242, "logger": "river", "batch_id": "1f0c...", "resource_id": "example-patient",
     "message": "batch 1f0c..., resource example-patient: extracting 100 instance(s)"}

`batch_id` and `resource_id` come from a record's `extra` or from the `about(...)` block
it was logged in (absent when neither says); a traceback is in `error`; gunicorn's access
lines add `method`, `path`, `status` and `duration_ms`. Lines are written to hold no
patient data: ids of batches and mapping resources, counts, reasons, route paths without
their query string (a FHIR search's parameters are patient data). Keep it so.

LOG_LEVEL and LOG_FORMAT are read here and nowhere else, from what the settings are
read from (`river.settings.environment`: the environment, over `.env`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import orjson

from river.settings import environment

TEXT, JSON = "text", "json"
FORMATS = (TEXT, JSON)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The fields a record may carry in `extra`, copied into the JSON line.
CONTEXT_FIELDS = ("batch_id", "resource_id")
# gunicorn's access line: the path without its query string (no search parameters).
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'

_batch_id: ContextVar[str | None] = ContextVar("fhir_river_batch_id", default=None)
_resource_id: ContextVar[str | None] = ContextVar("fhir_river_resource_id", default=None)


def configure_logging(service: str) -> None:
    """Log to stderr at LOG_LEVEL, in LOG_FORMAT, each line naming `service` (api,
    extractor, transformer, loader). Called again, it replaces what it set before
    (and only that). A wrong LOG_LEVEL or LOG_FORMAT stops the process with one sentence."""
    level, log_format, problem = _read_settings()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_fhir_river", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._fhir_river = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter(service, log_format))
    root.addHandler(handler)
    root.setLevel(level)
    if log_format == JSON:  # what Python itself would print on stderr: JSON lines too
        sys.excepthook = _uncaught
        threading.excepthook = lambda args: _uncaught(
            args.exc_type, args.exc_value, args.exc_traceback, args.thread
        )
        logging.captureWarnings(True)
    if problem:
        logging.getLogger("river").error("%s cannot start: %s", service, problem)
        raise SystemExit(1)


def formatter(service: str, log_format: str) -> logging.Formatter:
    """The formatter of LOG_FORMAT for `service`'s lines."""
    if log_format == JSON:
        return JsonFormatter(service)
    return logging.Formatter(f"%(asctime)s {service}[%(process)d] %(levelname)s %(message)s")


@contextlib.contextmanager
def about(batch_id: str | None, resource_id: str | None = None) -> Iterator[None]:
    """The lines logged inside (in this thread) name this batch and resource."""
    batch_token = _batch_id.set(batch_id)
    resource_token = _resource_id.set(resource_id)
    try:
        yield
    finally:
        _resource_id.reset(resource_token)
        _batch_id.reset(batch_token)


def gunicorn_options() -> dict[str, Any]:
    """gunicorn's settings for its own logs (the error log and the access log, on
    stderr and stdout): LOG_LEVEL, and in LOG_FORMAT=json the same JSON lines."""
    level, log_format, _ = _read_settings()
    options: dict[str, Any] = {
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": level.lower(),
        "access_log_format": ACCESS_LOG_FORMAT,
    }
    if log_format == JSON:
        options["logger_class"] = _gunicorn_json_logger()
    return options


class ContextFilter(logging.Filter):
    """Stamps a record with the batch and resource of the `about(...)` block it was
    logged in, unless its `extra` named them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "batch_id", None) is None:
            record.batch_id = _batch_id.get()
        if getattr(record, "resource_id", None) is None:
            record.resource_id = _resource_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback's newlines are escaped)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "service": self.service,
            "pid": record.process,
            "logger": record.name,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            line.update(_access_fields(record.args))
        line["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["error"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def _uncaught(kind: Any, value: Any, trace: Any, thread: Any = None) -> None:
    """An exception nothing caught, logged (as one JSON line) instead of printed."""
    if issubclass(kind, SystemExit):
        return  # a thread's SystemExit: silent, as Python's own hook keeps it
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, trace)
        return
    where = f" in thread {thread.name}" if thread is not None else ""
    logging.getLogger("river").critical(
        "uncaught %s%s", kind.__name__, where, exc_info=(kind, value, trace)
    )


def _utc(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{int((created - seconds) * 1000):03d}Z"
    )


def _access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """What a log shipper filters on in an access line (gunicorn's atoms)."""
    fields: dict[str, Any] = {"method": atoms.get("m"), "path": atoms.get("U")}
    with contextlib.suppress(TypeError, ValueError):
        fields["status"] = int(atoms.get("s"))  # type: ignore[arg-type]
    with contextlib.suppress(TypeError, ValueError):
        fields["duration_ms"] = int(atoms.get("M"))  # type: ignore[arg-type]
    return fields


def _read_settings() -> tuple[str, str, str | None]:
    """(level, format, the problem with them or None); wrong values fall back to INFO
    and text, so that the problem itself can be logged."""
    env = environment()
    given_level, given_format = env.get("LOG_LEVEL") or "INFO", env.get("LOG_FORMAT") or TEXT
    level, log_format = given_level.strip().upper(), given_format.strip().lower()
    problem = None
    if level not in LEVELS:
        problem = f"setting LOG_LEVEL must be one of {', '.join(LEVELS)}, not {given_level!r}"
        level = "INFO"
    if log_format not in FORMATS:
        problem = f"setting LOG_FORMAT must be text or json, not {given_format!r}"
        log_format = TEXT
    return level, log_format, problem


def _gunicorn_json_logger() -> type:
    """gunicorn's logger, its handlers writing JSON lines of service `api`."""
    from gunicorn.glogging import Logger

    class GunicornJsonLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter("api"))
                    if not any(isinstance(f, ContextFilter) for f in handler.filters):
                        handler.addFilter(ContextFilter())

    return GunicornJsonLogger
