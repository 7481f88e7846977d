"""LOG_FORMAT (adapters/logs.py): `json` makes every line a service or the API writes one
JSON object (time, level, service, batch and resource ids when known, message), gunicorn's
own lines included; the default stays readable text. The real entry points run in
subprocesses, with no Kafka, store or source to reach: a service that cannot start, the
extractor's handler on a batch of an unknown resource, the API under gunicorn."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import logs
from test.conftest import ROOT

FIELDS = {"time", "level", "service", "pid", "logger", "message"}
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+)\[\d+\] [A-Z]+ ")
UNREACHABLE = {
    "FHIR_STORE_URL": "postgresql://river:secret@127.0.0.1:1/fhirstore",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "KAFKA_CONNECT_URL": "http://127.0.0.1:1",
}


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a process run in `tmp_path` (no .env there): this checkout's
    mappings, nothing reachable, no LOG_* but the given ones."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LOG_", "METRICS_", "API_", "PROMETHEUS_"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        MAPPINGS=str(ROOT / "examples" / "mappings"),
        CONCEPT_MAPS=str(ROOT / "examples" / "concept_maps"),
        LIVE_SOURCES="",
        SOURCE_DB_URL="",
        **UNREACHABLE,
    )
    env.update(settings)
    return env


def run(tmp_path: Path, argv: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=tmp_path,
        env=environment(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=30,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """Each line of `text` as a JSON object carrying the fields (fails on any other line)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(record, dict), line
        assert set(record) >= FIELDS, f"{line!r} lacks {sorted(FIELDS - set(record))}"
        assert datetime.fromisoformat(record["time"].replace("Z", "+00:00")).tzinfo, line
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        parsed.append(record)
    return parsed


# --------------------------------------------------------------------------- #
# A service's entry point
# --------------------------------------------------------------------------- #
def test_a_service_that_cannot_start_says_so_in_json(tmp_path: Path):
    done = run(tmp_path, ["-m", "transformer"], LOG_FORMAT="json", MAPPINGS="/no/such/mappings")
    assert done.returncode == 1
    (line,) = json_lines(done.stderr)
    assert (line["service"], line["level"], line["logger"]) == ("transformer", "ERROR", "river")
    assert line["message"] == (
        "transformer cannot start: mapping file or folder not found: /no/such/mappings"
    )
    assert "batch_id" not in line and "resource_id" not in line  # none known here


def test_the_default_is_readable_text(tmp_path: Path):
    done = run(tmp_path, ["-m", "transformer"], MAPPINGS="/no/such/mappings")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert TEXT_LINE.match(line) and TEXT_LINE.match(line).group(1) == "transformer", line
    assert line.endswith(
        " ERROR transformer cannot start: mapping file or folder not found: /no/such/mappings"
    )
    assert not line.startswith("{")


@pytest.mark.parametrize(
    ("setting", "value", "sentence"),
    [
        ("LOG_FORMAT", "xml", "setting LOG_FORMAT must be text or json, not 'xml'"),
        (
            "LOG_LEVEL",
            "loud",
            "setting LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'loud'",
        ),
    ],
)
def test_a_wrong_log_setting_stops_the_service_in_one_sentence(
    tmp_path: Path, setting: str, value: str, sentence: str
):
    done = run(tmp_path, ["-m", "transformer"], **{setting: value})
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.endswith(f" ERROR transformer cannot start: {sentence}"), line


def test_the_log_settings_are_read_from_dot_env_too(tmp_path: Path):
    (tmp_path / ".env").write_text("LOG_FORMAT=json\n")
    done = run(tmp_path, ["-m", "transformer"], MAPPINGS="/no/such/mappings")
    assert json_lines(done.stderr)[0]["service"] == "transformer"
    done = run(tmp_path, ["-m", "transformer"], MAPPINGS="/no/such/mappings", LOG_FORMAT="text")
    assert TEXT_LINE.match(done.stderr), "the environment wins over .env"


EXTRACTOR_BATCH = """
import logging
from adapters import logs
from adapters.kafka import Message
from extractor.service import make_handler
from river import events
from river.engine import Engine
from river.settings import Settings

logs.configure_logging("extractor")


class Store:  # what the extractor asks of the store about a resource that fails
    def batch(self, batch_id):
        return None

    def resource_failed(self, batch_id, resource_id, reason):
        pass


class Out:
    def send(self, topic, key, event):
        pass


handle = make_handler(Engine.from_settings(Settings.load()), Store())
event = events.BatchEvent("batch-1", "no-such-resource")
handle([Message(events.BATCH, 0, 0, None, events.encode(event))], Out())
logging.getLogger("river").info("after the batch")
logging.getLogger("river").info("named", extra={"batch_id": "batch-2", "resource_id": "r"})
"""


def test_the_extractors_lines_about_a_batch_name_it(tmp_path: Path):
    """The extractor's real handler, on a batch event of a resource no mapping has."""
    done = run(tmp_path, ["-c", EXTRACTOR_BATCH], LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    failed, after, named = json_lines(done.stderr)
    assert failed["service"] == "extractor" and failed["level"] == "WARNING"
    assert (failed["batch_id"], failed["resource_id"]) == ("batch-1", "no-such-resource")
    assert failed["message"].startswith("batch batch-1, resource no-such-resource: ")
    assert "batch_id" not in after, "a batch's ids end with its handling"
    assert (named["batch_id"], named["resource_id"]) == ("batch-2", "r")  # `extra`


# --------------------------------------------------------------------------- #
# The API under gunicorn
# --------------------------------------------------------------------------- #
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def serve_api(tmp_path: Path, **settings: str) -> tuple[str, str]:
    """`python -m api` until it answered GET /health/live (with a query) and /metrics,
    then SIGTERM: (stdout, stderr)."""
    pytest.importorskip("gunicorn")
    port, metrics_port = free_port(), free_port()
    env = environment(
        tmp_path,
        API_AUTH="none",
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        API_WORKERS="1",
        METRICS_PORT_API=str(metrics_port),
        **settings,
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "api"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get(f"http://127.0.0.1:{port}/health/live?name=Dupont") == 200
                break
            except OSError:
                assert api.poll() is None, api.communicate()[1]
                assert time.monotonic() < deadline, "the API did not answer within 30 s"
                time.sleep(0.2)
        assert get(f"http://127.0.0.1:{metrics_port}/metrics") == 200
    finally:
        api.send_signal(signal.SIGTERM)
        out, err = api.communicate(timeout=30)
    return out, err


def test_the_api_and_gunicorn_log_json(tmp_path: Path):
    out, err = serve_api(tmp_path, LOG_FORMAT="json")
    lines = json_lines(out) + json_lines(err)
    assert {line["service"] for line in lines} == {"api"}
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "gunicorn.access", "river"} <= loggers, loggers
    (access,) = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/health/live", 200)
    assert isinstance(access["duration_ms"], int)
    # A search's parameters are patient data: no query string in the access log.
    assert "Dupont" not in out + err
    assert any(line["message"].startswith("api metrics on http://") for line in lines)


def test_the_apis_default_is_text(tmp_path: Path):
    out, err = serve_api(tmp_path)
    assert not any(line.startswith("{") for line in (out + err).splitlines())
    assert re.search(r"^127\.0\.0\.1 \"GET /health/live HTTP/1\.1\" 200 ", out, re.M), out
    assert re.search(r" api\[\d+\] INFO api metrics on http://", err), err
    assert "Dupont" not in out + err


# --------------------------------------------------------------------------- #
# The formatter
# --------------------------------------------------------------------------- #
def record(message: str, **extra: Any) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "river", "levelno": logging.ERROR,
                                  "levelname": "ERROR", "msg": message, **extra})  # fmt: skip
    logs.ContextFilter().filter(made)
    return made


def test_a_traceback_stays_on_the_line():
    try:
        raise ValueError("a reason\non two lines")
    except ValueError:
        made = record("failed", exc_info=sys.exc_info())
    line = logs.JsonFormatter("loader").format(made)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed" and parsed["service"] == "loader"
    assert parsed["error"].startswith("Traceback") and "ValueError: a reason" in parsed["error"]


def test_about_names_the_batch_and_extra_wins():
    with logs.about("b-1", "example-patient"):
        inside = json.loads(logs.JsonFormatter("extractor").format(record("x")))
        named = json.loads(logs.JsonFormatter("extractor").format(record("y", batch_id="b-2")))
    outside = json.loads(logs.JsonFormatter("extractor").format(record("z")))
    assert (inside["batch_id"], inside["resource_id"]) == ("b-1", "example-patient")
    assert (named["batch_id"], named["resource_id"]) == ("b-2", "example-patient")
    assert "batch_id" not in outside and "resource_id" not in outside
