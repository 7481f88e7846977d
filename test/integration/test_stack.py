"""The local stack (infra/): its parts answer, and its scripts fail with one clear sentence.

The first tests use the running stack (`make test` starts it first). The failure tests run
the scripts in a subprocess with a throw-away STATE_DIR and ports of their own, so they
never touch the running stack or its state folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values

from river import events

ROOT = Path(__file__).resolve().parents[2]
TOPICS = events.TOPICS

pytestmark = pytest.mark.stack


def settings() -> dict[str, str]:
    """What infra/lib.sh reads: .env.example, then .env, then the environment wins."""
    values: dict[str, str] = {}
    for name in (".env.example", ".env"):
        if (ROOT / name).exists():
            values.update({k: v or "" for k, v in dotenv_values(ROOT / name).items()})
    values.update({k: os.environ[k] for k in values if k in os.environ})
    return values


S = settings()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the running stack ---------------------------------------------------------------------


def test_kafka_lists_the_pipeline_topics_with_3_partitions_or_more():
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{S['KAFKA_PORT']}"})
    topics = admin.list_topics(timeout=10).topics
    prefix = S.get("KAFKA_TOPIC_PREFIX", "")
    for name in TOPICS:
        assert prefix + name in topics, f"topic {prefix + name} missing: {sorted(topics)}"
        assert len(topics[prefix + name].partitions) >= 3


def test_connect_lists_the_debezium_and_camel_connectors():
    url = f"http://127.0.0.1:{S['KAFKA_CONNECT_PORT']}/connector-plugins"
    with urllib.request.urlopen(url, timeout=10) as answer:
        classes = {plugin["class"] for plugin in json.load(answer)}
    assert "io.debezium.connector.postgresql.PostgresConnector" in classes
    assert "org.apache.camel.kafkaconnector.CamelSourceConnector" in classes


@pytest.mark.parametrize("database", ["SOURCE_DB_NAME", "FHIRSTORE_DB_NAME"])
def test_postgresql_serves_the_source_and_store_databases(database):
    import psycopg

    with psycopg.connect(
        host="127.0.0.1",
        port=int(S["POSTGRES_PORT"]),
        user=S["POSTGRES_USER"],
        password=S["POSTGRES_PASSWORD"],
        dbname=S[database],
        connect_timeout=10,
    ) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == S[database]
        # Debezium's CDC needs logical decoding.
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"


def test_sftp_login_and_upload_into_upload_data():
    import paramiko

    name = f"upload/data/test-stack-{uuid.uuid4().hex}.csv"
    transport = paramiko.Transport(("127.0.0.1", int(S["SFTP_PORT"])))
    try:
        transport.connect(username=S["SFTP_USER"], password=S["SFTP_PASSWORD"])
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sorted(sftp.listdir("upload")) == ["data", "error", "finished"]
        data = b"subject_id,gender\n1,F\n"
        sftp.putfo(io.BytesIO(data), name)
        try:
            assert sftp.stat(name).st_size == len(data)
        finally:
            sftp.remove(name)
    finally:
        transport.close()


def test_status_says_every_part_runs():
    out = subprocess.run(
        ["bash", "infra/status.sh"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for part in ("postgres", "kafka", "connect", "sshd", "prometheus"):
        assert re.search(rf"^\s*{part}\s+running\s", out, re.M), out


def test_start_again_reuses_every_running_part():
    run = subprocess.run(
        ["bash", "infra/start.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    for label in ("PostgreSQL", "Kafka (KRaft)", "Kafka Connect", "SFTP (OpenSSH)", "Prometheus"):
        line = rf"^\s*{re.escape(label)}\s+[\d.]+s\s+reused \(pid \d+\)"
        assert re.search(line, run.stdout, re.M), run.stdout


# --- failures: one sentence that says what to do -------------------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a second stack: its own empty state folder and free ports."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA", "JAVA_HOME")}
    env["STATE_DIR"] = str(tmp_path / "state")
    for setting in (
        "KAFKA_PORT",
        "KAFKA_CONTROLLER_PORT",
        "KAFKA_SASL_PORT",
        "KAFKA_CONNECT_PORT",
        "POSTGRES_PORT",
        "SFTP_PORT",
        "API_PORT",
        "PROMETHEUS_PORT",
        "METRICS_PORT_API",
        "METRICS_PORT_EXTRACTOR",
        "METRICS_PORT_TRANSFORMER",
        "METRICS_PORT_LOADER",
    ):
        env[setting] = str(free_port())
    yield env
    # Nothing of the second stack was started.
    assert not list((tmp_path / "state").glob("pids/*.pid"))


def run_script(script: str, env: dict[str, str], timeout: float = 60):
    return subprocess.run(
        ["bash", f"infra/{script}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def the_sentence(run: subprocess.CompletedProcess) -> str:
    assert run.returncode != 0, run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, run.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("setting", "part"),
    [("POSTGRES_PORT", "PostgreSQL"), ("KAFKA_PORT", "Kafka"), ("SFTP_PORT", "SFTP")],
)
def test_start_stops_when_another_process_holds_a_port(elsewhere, setting, part):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        elsewhere[setting] = str(port)
        sentence = the_sentence(run_script("start.sh", elsewhere))
    assert sentence.startswith(
        f"Error: Port {port} ({setting}, for {part}) is already in use by "
    ), sentence
    assert f"(pid {os.getpid()})" in sentence
    assert f"stop that process or set {setting} to a free port in .env" in sentence


def test_start_names_the_other_local_stack_that_holds_a_port(elsewhere):
    # A second checkout (another STATE_DIR) on the running stack's PostgreSQL port.
    elsewhere["POSTGRES_PORT"] = port = S["POSTGRES_PORT"]
    state = (ROOT / S["STATE_DIR"]).resolve()
    sentence = the_sentence(run_script("start.sh", elsewhere))
    assert sentence.startswith(
        f"Error: Port {port} (POSTGRES_PORT, for PostgreSQL) is already in use by postgres (pid "
    ), sentence
    assert sentence.endswith(
        f" of the local stack whose state is in {state}: stop that stack (make stop in its "
        "checkout) or set POSTGRES_PORT to a free port in .env, then run this again."
    ), sentence


def test_start_without_java_on_the_path(elsewhere, tmp_path):
    # Every program of /usr/bin and /bin but java.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/bin", "/bin"):
        for program in Path(folder).iterdir():
            link = bin_dir / program.name
            if program.name != "java" and not link.exists():
                link.symlink_to(program)
    elsewhere["PATH"] = f"{bin_dir}:/usr/sbin:/sbin"
    sentence = the_sentence(run_script("start.sh", elsewhere))
    assert sentence == (
        "Error: Java not found (no java on PATH, JAVA and JAVA_HOME unset), so Kafka cannot run; "
        "install Java 17 or newer (apt-get install default-jre-headless, which make install "
        "does) or point JAVA or JAVA_HOME at one."
    )


@pytest.mark.parametrize("script", ["start.sh", "install.sh"])
def test_scripts_stop_when_java_is_missing(elsewhere, script):
    elsewhere["JAVA"] = "/nonexistent/jdk/bin/java"
    sentence = the_sentence(run_script(script, elsewhere))
    assert sentence == (
        "Error: Java not found: JAVA=/nonexistent/jdk/bin/java is not an executable, so Kafka "
        "cannot run; install Java 17 or newer (apt-get install default-jre-headless, which "
        "make install does) or point JAVA or JAVA_HOME at one."
    )


def test_install_names_the_artifact_it_could_not_download(elsewhere):
    # DEBEZIUM_VERSION (like KAFKA_VERSION, CAMEL_VERSION...) overrides what install.sh fetches.
    elsewhere["DEBEZIUM_VERSION"] = "0.0.0-does-not-exist"
    run = run_script("install.sh", elsewhere, timeout=180)
    sentence = the_sentence(run)
    assert sentence.startswith(
        "Error: Could not download io.debezium:debezium-connector-postgres:jar:0.0.0-does-not-exist"
        " from Maven Central: "
    ), sentence
    assert "check the network and the version, then run make install again" in sentence
    # Nothing half-downloaded is left as if installed.
    plugin = Path(elsewhere["STATE_DIR"]) / "connect-plugins/debezium-connector-postgres"
    assert not plugin.exists()


# --- a FHIR River service that exits at start ----------------------------------------------

# start.sh's services step, as start.sh runs it (infra/lib.sh), on chosen services: the whole
# start.sh would also start a second PostgreSQL, Kafka and Connect in the throw-away state.
SERVICES_STEP = (
    'source infra/lib.sh && load_settings && mkdir -p "$LOGS" && '
    'step "FHIR River services" services_start "$@" && die_if_services_exited'
)


@pytest.fixture
def exited_extractor(
    elsewhere: dict[str, str],
) -> Iterator[tuple[dict[str, str], Path, subprocess.CompletedProcess[str]]]:
    """A real extractor started in the second stack's state folder with a LIVE_SOURCES it
    refuses: the environment, its log, and what the services step printed (stdout, stderr).
    It exits at start, before consuming anything, so the running stack never sees it."""
    elsewhere["LIVE_SOURCES"] = "nowhere.json"
    run = subprocess.run(
        ["bash", "-c", SERVICES_STEP, "services-step", "extractor"],
        cwd=ROOT,
        env=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    pid_file = Path(elsewhere["STATE_DIR"]) / "pids" / "extractor.pid"
    try:
        yield elsewhere, Path(elsewhere["STATE_DIR"]) / "logs" / "extractor.log", run
    finally:
        # The pid file of a service that exited stays (status.sh reads it); should the
        # extractor run after all (the test failed), it is stopped here.
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, 15)
            pid_file.unlink()


def last_line(log: Path) -> str:
    return [line for line in log.read_text().splitlines() if line.strip()][-1]


def test_start_stops_with_the_last_log_line_of_a_service_that_exits_at_start(exited_extractor):
    _, log, run = exited_extractor
    assert re.search(
        r"^\s*FHIR River services\s+[\d.]+s\s+running: none; exited: extractor$", run.stdout, re.M
    ), run.stdout
    last = last_line(log)
    assert "extractor cannot start: setting LIVE_SOURCES (nowhere.json)" in last, last
    assert the_sentence(run) == (
        f'Error: the extractor service exited right after starting, its log {log} ends with "'
        f'{last}": fix what it says, then run make start again.'
    )


def test_status_reports_a_service_that_exited_with_the_last_line_of_its_log(exited_extractor):
    env, log, _ = exited_extractor
    status = run_script("status.sh", env)
    assert status.returncode == 0, status.stderr
    line = rf"^\s*extractor\s+exited\s+\(consumer\)\s+last line of {re.escape(str(log))}: (.*)$"
    found = re.search(line, status.stdout, re.M)
    assert found, status.stdout
    assert found.group(1) == last_line(log)
    assert "extractor cannot start: setting LIVE_SOURCES (nowhere.json)" in found.group(1)
    # The services that were never started are just stopped.
    assert re.search(r"^\s*loader\s+stopped\s+\(consumer\)\s*$", status.stdout, re.M)
