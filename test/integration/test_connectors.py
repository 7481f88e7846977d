"""The connector configs of kafka_connect_connectors/sources and `river connectors`
(adapters/connect.py), against the running stack's Kafka Connect, Debezium, PostgreSQL
and SFTP server.

The committed files are pushed with test-only names (connector, replication slot,
publication, topics, SFTP folder, all suffixed with a uuid), so that a user's own
connectors are never touched, and everything made here is removed at the end.
Latencies seen are printed (pytest -s).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from adapters.connect import load_file, mask_config, mask_secrets, push, remove
from river.secrets import is_secret_key
from test.conftest import kafka_client, wait_for
from test.integration.test_stack import ROOT, S
from test.utils.create_file_stfp import (
    list_folder,
    make_upload_folder,
    remove_upload_folder,
    upload,
)

pytestmark = pytest.mark.stack

CONNECT = f"http://127.0.0.1:{S['KAFKA_CONNECT_PORT']}"
SOURCES = ROOT / "kafka_connect_connectors" / "sources"
CDC_FILE = SOURCES / "mimic-postgres-cdc.json"
SFTP_FILE = SOURCES / "mimic-sftp-csv.json"
SOURCE_DB = (
    f"postgresql://{S['POSTGRES_USER']}:{S['POSTGRES_PASSWORD']}@127.0.0.1:{S['POSTGRES_PORT']}"
    f"/{S['SOURCE_DB_NAME']}"
)
WAIT = 15.0
LATENCIES: dict[str, float] = {}


def connect_environment() -> set[str] | None:
    """The names of the variables the local stack's Connect runs with (None: unknown)."""
    state = Path(S.get("STATE_DIR") or ".state")
    state = state if state.is_absolute() else ROOT / state
    try:
        pid = (state / "pids" / "connect.pid").read_text().split()[0]
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, IndexError):
        return None
    return {item.split(b"=", 1)[0].decode() for item in environ.split(b"\0") if b"=" in item}


@dataclass
class Run:
    suffix: str
    folder: Path
    cdc: dict[str, Any] = field(default_factory=dict)
    sftp: dict[str, Any] = field(default_factory=dict)
    printed: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [self.folder / "cdc.json", self.folder / "sftp.json"]

    @property
    def cdc_topic(self) -> str:
        return f"{self.cdc['config']['topic.prefix']}.public.patients"

    @property
    def sftp_topic(self) -> str:
        return self.sftp["config"]["topics"]

    @property
    def sftp_root(self) -> str:  # .../data is polled; ../finished and ../error beside it
        return self.sftp["config"]["camel.source.path.directoryName"].rsplit("/", 1)[0]

    def call(self, function: Callable[..., int], *args: Any) -> tuple[int, str, str]:
        """Runs a `river connectors` function, keeping what it printed."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = function(*args, out=out)
        self.printed += [out.getvalue(), err.getvalue()]
        return code, out.getvalue(), err.getvalue()


def consumer(topic: str):
    from confluent_kafka import Consumer

    c = Consumer(
        {
            **kafka_client(),
            "group.id": f"river-test-connectors-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 500,  # the topic appears with the first change
        }
    )
    c.subscribe([topic])
    return c


def next_message(c, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = c.poll(0.2)
        if message is None:
            continue
        if message.error():
            if message.error().code() == -191:  # _PARTITION_EOF
                continue
            if "UNKNOWN_TOPIC" in message.error().name():  # not created yet
                continue
            pytest.fail(f"{what}: {message.error()}")
        return message
    pytest.fail(f"{what}: nothing within {timeout:.0f} s")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[Run]:
    try:
        requests.get(CONNECT + "/connectors", timeout=5).raise_for_status()
    except requests.RequestException as error:
        pytest.fail(f"Kafka Connect does not answer at {CONNECT} ({error}): run make start")
    suffix = uuid.uuid4().hex[:8]
    r = Run(suffix, tmp_path_factory.mktemp("connectors"))
    r.cdc = json.loads(CDC_FILE.read_text())
    r.sftp = json.loads(SFTP_FILE.read_text())
    r.cdc["name"] = f"river-test-cdc-{suffix}"
    r.cdc["config"].update(
        {
            "slot.name": f"river_test_{suffix}",
            "publication.name": f"river_test_{suffix}",
            "topic.prefix": f"river-test-{suffix}",
        }
    )
    r.sftp["name"] = f"river-test-sftp-{suffix}"
    # A folder of its own below upload/data (which a user's connector does not read: it
    # is not recursive), laid out as upload/: data, finished, error.
    r.sftp["config"].update(
        {
            "topics": f"river-test-{suffix}-sftp-csv",
            "camel.source.path.directoryName": f"upload/data/river-test-{suffix}/data",
        }
    )
    environment = connect_environment()
    for config, key, name in (
        (r.cdc, "database.hostname", "POSTGRES_HOST"),
        (r.sftp, "camel.source.path.host", "SFTP_HOST"),
    ):
        assert config["config"][key] == f"${{env:{name}}}"
        if environment is not None and name not in environment:
            # The running Connect was started without it (infra/start.sh before it passed
            # the hosts): the local stack's address, so that the rest is still tested.
            config["config"][key] = "127.0.0.1"
    r.files[0].write_text(json.dumps(r.cdc))
    r.files[1].write_text(json.dumps(r.sftp))
    make_upload_folder(r.sftp_root)
    try:
        yield r
    finally:
        _clean_up(r)
        if LATENCIES:
            print(
                "\nlatencies seen: "
                + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in LATENCIES.items())
            )


def _clean_up(r: Run) -> None:
    for name in (r.cdc["name"], r.sftp["name"]):
        with contextlib.suppress(Exception):
            if requests.get(f"{CONNECT}/connectors/{name}", timeout=5).status_code == 200:
                remove(CONNECT, name, SOURCE_DB, out=io.StringIO())
    with contextlib.suppress(Exception), psycopg.connect(SOURCE_DB, autocommit=True) as db:
        slot = r.cdc["config"]["slot.name"]
        if db.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND NOT active", [slot]
        ).fetchone():
            db.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        db.execute(f'DROP PUBLICATION IF EXISTS "{r.cdc["config"]["publication.name"]}"')
        db.execute("DELETE FROM patients WHERE row_id >= 900000000 AND gender = 'T'")
    with contextlib.suppress(Exception):
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(kafka_client())
        prefix = r.cdc["config"]["topic.prefix"]
        mine = [
            t
            for t in admin.list_topics(timeout=10).topics
            if t.startswith(prefix) or t.endswith("." + prefix)
        ]
        for future in admin.delete_topics(mine).values():
            future.result(10)
    with contextlib.suppress(Exception):
        remove_upload_folder(r.sftp_root)


# --- the tests, in order: push, use, remove --------------------------------------------------


def test_push_starts_both_connectors_and_pushing_again_changes_nothing(run):
    code, out, err = run.call(push, CONNECT, run.files)
    assert code == 0, out + err
    lines = out.splitlines()
    assert len(lines) == 2, out
    for line, name in zip(lines, (run.cdc["name"], run.sftp["name"]), strict=True):
        assert line.startswith(f"{name}: RUNNING (created"), line
    before = {
        n: requests.get(f"{CONNECT}/connectors/{n}/config", timeout=5).json()
        for n in (run.cdc["name"], run.sftp["name"])
    }

    code, out, err = run.call(push, CONNECT, run.files)
    assert code == 0, out + err
    assert [line.split(" (")[0] for line in out.splitlines()] == [
        f"{run.cdc['name']}: RUNNING",
        f"{run.sftp['name']}: RUNNING",
    ]
    assert all("(updated" in line for line in out.splitlines()), out
    for document in (run.cdc, run.sftp):
        name = document["name"]
        after = requests.get(f"{CONNECT}/connectors/{name}/config", timeout=5).json()
        assert after == before[name] == {**document["config"], "name": name}
        status = requests.get(f"{CONNECT}/connectors/{name}/status", timeout=5).json()
        assert [t["state"] for t in status["tasks"]] == ["RUNNING"]


def test_a_row_change_arrives_as_debezium_events(run):
    row_id = 900_000_000 + uuid.uuid4().int % 99_000_000
    c = consumer(run.cdc_topic)
    try:
        with psycopg.connect(SOURCE_DB, autocommit=True) as db:
            committed = time.monotonic()
            db.execute(
                "INSERT INTO patients (row_id, subject_id, gender, dob, expire_flag)"
                " VALUES (%s, %s, 'T', '2101-02-03 04:05:06', 0)",
                [row_id, row_id],
            )
            created = next_message(c, f"the insert on {run.cdc_topic}")
            LATENCIES["first insert (topic created)"] = time.monotonic() - committed
            assert json.loads(created.key()) == {"row_id": row_id}
            event = json.loads(created.value())
            assert event["op"] == "c"
            assert event["before"] is None
            assert event["after"] == {
                "row_id": row_id,
                "subject_id": row_id,
                "gender": "T",
                "dob": "2101-02-03T04:05:06Z",
                "dod": None,
                "dod_hosp": None,
                "dod_ssn": None,
                "expire_flag": 0,
            }
            assert event["source"]["table"] == "patients" and event["source"]["schema"] == "public"

            committed = time.monotonic()
            db.execute("UPDATE patients SET expire_flag = 1 WHERE row_id = %s", [row_id])
            updated = json.loads(next_message(c, "the update").value())
            LATENCIES["update"] = time.monotonic() - committed
            assert updated["op"] == "u"
            # replica identity FULL (replica.identity.autoset.values): the old row in full
            assert updated["before"]["expire_flag"] == 0 and updated["before"]["gender"] == "T"
            assert updated["after"]["expire_flag"] == 1

            committed = time.monotonic()
            db.execute("DELETE FROM patients WHERE row_id = %s", [row_id])
            deleted = next_message(c, "the delete")
            LATENCIES["delete"] = time.monotonic() - committed
            event = json.loads(deleted.value())
            assert event["op"] == "d" and event["after"] is None
            assert event["before"]["subject_id"] == row_id
            tombstone = next_message(c, "the tombstone after the delete")
            assert tombstone.value() is None
            assert json.loads(tombstone.key()) == {"row_id": row_id}
        topics = c.list_topics(run.cdc_topic, timeout=10).topics
        assert len(topics[run.cdc_topic].partitions) == 3
    finally:
        c.close()
        with psycopg.connect(SOURCE_DB, autocommit=True) as db:
            db.execute("DELETE FROM patients WHERE row_id = %s", [row_id])


def test_a_csv_file_arrives_as_rows_and_moves_to_finished(run, tmp_path):
    csv = tmp_path / f"patients-{run.suffix}.csv"
    csv.write_text('subject_id,gender,note\n900000001,F,"a, quoted"\n900000002,M,\n')
    c = consumer(run.sftp_topic)
    try:
        started = time.monotonic()
        upload(csv, f"{run.sftp_root}/data")
        message = next_message(c, f"the file on {run.sftp_topic}")
        LATENCIES["csv file of 2 rows"] = time.monotonic() - started
    finally:
        c.close()
    assert message.key().decode() == csv.name
    assert json.loads(message.value()) == [
        ["subject_id", "gender", "note"],
        ["900000001", "F", "a, quoted"],
        ["900000002", "M", ""],
    ]
    wait_for("the file in finished", lambda: csv.name in list_folder(f"{run.sftp_root}/finished"))
    assert list_folder(f"{run.sftp_root}/data") == []


def test_a_malformed_csv_goes_to_error_and_the_connector_goes_on(run, tmp_path):
    bad = tmp_path / f"broken-{run.suffix}.csv"
    bad.write_text('subject_id,gender\n900000003,"F\n900000004,M\n')  # quote never closed
    good = tmp_path / f"after-{run.suffix}.csv"
    good.write_text("subject_id,gender\n900000005,F\n")
    c = consumer(run.sftp_topic)
    try:
        upload(bad, f"{run.sftp_root}/data")
        wait_for(
            "the malformed file in error", lambda: bad.name in list_folder(f"{run.sftp_root}/error")
        )
        started = time.monotonic()
        upload(good, f"{run.sftp_root}/data")
        keys = set()
        while good.name not in keys:
            keys.add(next_message(c, "the good file after the malformed one").key().decode())
        LATENCIES["csv file of 1 row, topic there"] = time.monotonic() - started
    finally:
        c.close()
    assert bad.name not in keys  # nothing sent for it
    wait_for(
        "the good file in finished", lambda: good.name in list_folder(f"{run.sftp_root}/finished")
    )
    status = requests.get(f"{CONNECT}/connectors/{run.sftp['name']}/status", timeout=5).json()
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"]


def test_no_secret_in_connect_answers(run):
    secrets = {S["POSTGRES_PASSWORD"], S["SFTP_PASSWORD"]}
    for document in (run.cdc, run.sftp):
        name = document["name"]
        answers = [
            requests.get(f"{CONNECT}/connectors/{name}", timeout=5).json()["config"],
            requests.get(f"{CONNECT}/connectors/{name}/config", timeout=5).json(),
        ]
        answers += [
            t["config"]
            for t in requests.get(f"{CONNECT}/connectors/{name}/tasks", timeout=5).json()
        ]
        for config in answers:
            for key, value in config.items():
                if is_secret_key(key):
                    assert value.startswith(("${env:", "RAW(${env:")), (name, key)
                assert value not in secrets or not is_secret_key(key), (name, key)
            assert mask_config(config) == config  # nothing that would need masking


def test_remove_deletes_the_connectors_and_their_replication_slot(run):
    slot = run.cdc["config"]["slot.name"]
    publication = run.cdc["config"]["publication.name"]
    code, out, err = run.call(remove, CONNECT, run.cdc["name"], SOURCE_DB)
    assert code == 0, out + err
    assert out.strip() == (
        f"{run.cdc['name']}: removed; replication slot {slot} dropped;"
        f" publication {publication} dropped"
    )
    code, out, err = run.call(remove, CONNECT, run.sftp["name"])
    assert (code, out.strip()) == (0, f"{run.sftp['name']}: removed"), err
    for name in (run.cdc["name"], run.sftp["name"]):
        assert requests.get(f"{CONNECT}/connectors/{name}", timeout=5).status_code == 404
    with psycopg.connect(SOURCE_DB) as db:
        assert (
            db.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot]
            ).fetchone()[0]
            == 0
        )
        assert (
            db.execute(
                "SELECT count(*) FROM pg_publication WHERE pubname = %s", [publication]
            ).fetchone()[0]
            == 0
        )

    # The offsets went with it (Connect keeps them after a DELETE): the same connector
    # starts afresh on a new slot instead of failing on an LSN the old slot held.
    code, out, err = run.call(push, CONNECT, run.files[:1])
    assert code == 0 and out.startswith(f"{run.cdc['name']}: RUNNING (created"), out + err
    code, out, err = run.call(remove, CONNECT, run.cdc["name"], SOURCE_DB)
    assert code == 0 and "replication slot" in out, out + err

    code, out, err = run.call(remove, CONNECT, run.cdc["name"])
    assert code == 1 and out == ""
    assert err == f"river: Kafka Connect at {CONNECT} has no connector named {run.cdc['name']}\n"


def test_nothing_printed_holds_a_secret(run):
    printed = "".join(run.printed)
    assert printed  # the tests above printed their lines
    assert mask_secrets(printed) == printed
    assert "password" not in printed.lower()


# --- without the stack: files and masking ----------------------------------------------------


def test_the_committed_files_hold_placeholders_not_secrets():
    for path in (CDC_FILE, SFTP_FILE):
        loaded = load_file(path)  # refuses a literal secret
        placeholders = [v for v in loaded.config.values() if "${" in v]
        assert all(v.startswith(("${env:", "RAW(${env:")) for v in placeholders), placeholders
    cdc = load_file(CDC_FILE).config
    assert cdc["database.password"] == "${env:POSTGRES_PASSWORD}"
    assert (
        load_file(SFTP_FILE).config["camel.source.endpoint.password"] == "RAW(${env:SFTP_PASSWORD})"
    )


def test_bad_files_are_refused_with_their_name(tmp_path):
    literal = tmp_path / "literal.json"
    literal.write_text(json.dumps({"name": "x", "config": {"database.password": "s3cret"}}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "config": {')
    for path, words in ((literal, "written literally"), (broken, "not valid JSON")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert push("http://127.0.0.1:1", [path], out=io.StringIO()) == 1
        assert err.getvalue().startswith(f"river: {path}") and words in err.getvalue()
        assert "s3cret" not in err.getvalue()


def test_connect_unreachable_is_one_sentence(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert push("http://127.0.0.1:1", [CDC_FILE], out=io.StringIO()) == 1
    assert err.getvalue() == (
        "river: Kafka Connect is not reachable at http://127.0.0.1:1: start it (make start)"
        " or set KAFKA_CONNECT_URL\n"
    )


def test_masking():
    assert mask_secrets("sftp://river@h:22/upload?password=hunter2&delay=200") == (
        "sftp://river@h:22/upload?password=***&delay=200"
    )
    assert mask_secrets('{"database.password": "hunter2", "x": 1}') == (
        '{"database.password": "***", "x": 1}'
    )
    assert (
        mask_secrets("postgresql://u:hunter2@db:5432/mimic") == "postgresql://u:***@db:5432/mimic"
    )
    assert mask_secrets("database.password=${env:POSTGRES_PASSWORD}") == (
        "database.password=${env:POSTGRES_PASSWORD}"
    )
    # One mask everywhere (river/secrets.py): a URL's password, a secret-like key's value.
    assert mask_secrets("jdbc:postgresql://h/db user=river pwd=hunter2") == (
        "jdbc:postgresql://h/db user=river pwd=***"
    )
    assert mask_config({"database.password": "x", "sftp.password": "${env:P}", "user": "u"}) == {
        "database.password": "***",
        "sftp.password": "${env:P}",
        "user": "u",
    }
