"""Fixtures shared by the integration and end-to-end tests.

They run against the real local stack (`make test` starts it): PostgreSQL on
$POSTGRES_PORT. Each fixture works in a scratch database of its own, created
and dropped here, so tests never touch `mimic` or `fhirstore`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from adapters.kafka import kafka_config, wait_for_leaders
from river.events import TOPICS
from river.settings import Settings
from test.utils.dbutil import unpacked

ROOT = Path(__file__).resolve().parents[1]
# The test data ship with the repository, gzip'd (test/data/README.md): the MIMIC-III
# demo (load_folder reads its .csv.gz files), the Pyrog mappings and the ConceptMaps
# (plain copies, made once per session, for what reads plain files: river, the services).
TEST_DATA = ROOT / "test" / "data"
MIMIC_DEMO = TEST_DATA / "mimic-iii-demo"
MIMIC_DEMO_MAPPING = unpacked(TEST_DATA / "mappings" / "mimic-demo.json")
CONCEPT_MAPS = unpacked(TEST_DATA / "mappings" / "concept_maps.json")
FORMAT_EXAMPLES = unpacked(TEST_DATA / "mappings" / "format-examples")


# The stack's Kafka as the services see it (.env, then the environment): where it is and
# how to talk to it (KAFKA_SECURITY_PROTOCOL, SASL, TLS); the tests' own clients use both.
KAFKA_SETTINGS = Settings.load(ROOT / ".env")
KAFKA = KAFKA_SETTINGS.kafka_bootstrap_servers


def kafka_client(**config: Any) -> dict[str, Any]:
    """The configuration of a test's Kafka client of the stack (adapters/kafka.py's
    kafka_config: bootstrap servers and security), with `config` on top."""
    return kafka_config(KAFKA_SETTINGS, **config)


def kafka_settings(**changes: Any) -> Settings:
    """Settings() on the stack's Kafka (KAFKA and how to talk to it), with `changes`: what
    a test gives the EventProducer or the service loop it runs in-process."""
    kafka = {
        name: getattr(KAFKA_SETTINGS, name)
        for name in Settings.__dataclass_fields__
        if name == "kafka_bootstrap_servers"
        or name.startswith(("kafka_security", "kafka_sasl", "kafka_ssl"))
    }
    return Settings(**{**kafka, **changes})


STATE_DIR = Path(os.environ.get("STATE_DIR") or ROOT / ".state")
# Tests never read nor write the tokens of the person running them (`river login`).
os.environ["RIVER_TOKEN_FILE"] = str(
    Path(tempfile.gettempdir()) / f"fhir-river-test-tokens-{os.getpid()}.json"
)
KEYCLOAK = "http://127.0.0.1:" + os.environ.get("KEYCLOAK_PORT", "8180")
ISSUER = KEYCLOAK + "/realms/fhir-river"


def scripts_settings(**changes: Any) -> Settings:
    """Settings that log in as the local stack's scripts client (cli/login.py's Login)."""
    client = scripts_client()
    return Settings(
        oidc_issuer=ISSUER,
        river_client_id=client["RIVER_CLIENT_ID"],
        river_client_secret=client["RIVER_CLIENT_SECRET"],
        **changes,
    )


def scripts_client() -> dict[str, str]:
    """The local stack's confidential client (infra/keycloak.sh made its secret): the
    environment a script, a service or a test needs to call the API as an operator."""
    secret = (STATE_DIR / "keycloak" / "secrets" / "river-scripts.secret").read_text().strip()
    return {"RIVER_CLIENT_ID": "river-scripts", "RIVER_CLIENT_SECRET": secret}


def without_last_updated(resource: dict) -> dict:
    """A resource as compared across runs: meta.lastUpdated is the time it was made."""
    meta = {k: v for k, v in resource.get("meta", {}).items() if k != "lastUpdated"}
    return {**resource, "meta": meta}


@contextmanager
def kafka_topics(prefix: str, topics: tuple[str, ...] = TOPICS) -> Iterator[list[str]]:
    """The pipeline's topics under `prefix` (3 partitions, as the stack makes
    them), deleted after: each test run has topics nobody else reads."""
    admin = AdminClient(kafka_client())
    names = [prefix + topic for topic in topics]
    new = [NewTopic(name, num_partitions=3, replication_factor=1) for name in names]
    for future in admin.create_topics(new).values():
        future.result(30)
    wait_for_leaders(admin, names)  # else a watermark read at once may fail (NOT_LEADER)
    try:
        yield names
    finally:
        for future in admin.delete_topics(names).values():
            with contextlib.suppress(Exception):  # best-effort clean-up
                future.result(30)


def committed(group: str) -> dict[int, int]:
    """partition -> the group's committed offset, -1 if none (the group consumes one
    topic of 3 partitions)."""
    admin = AdminClient(kafka_client())
    found = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    offsets = {tp.partition: tp.offset for tp in found[group].result(10).topic_partitions}
    return {p: offsets.get(p, -1) for p in range(3)}


# A partition's leadership still settling: ask again.
_LEADERSHIP = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)


def high_watermarks(consumer: Consumer, topic: str, timeout: float = 30) -> dict[int, int]:
    """partition -> the offset its next message will take (the stack's 3 partitions).

    A new topic's partitions may already show a leader in the metadata while that
    broker does not serve them yet (NOT_LEADER_FOR_PARTITION, seen in CI after
    wait_for_leaders): a partition whose leadership is settling is asked again until `timeout`."""
    deadline = time.monotonic() + timeout
    marks = {}
    for p in range(3):
        while True:
            try:
                marks[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                break
            except KafkaException as error:
                kafka_error = error.args[0]
                moving = kafka_error.retriable() or kafka_error.code() in _LEADERSHIP
                if not moving or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return marks


def reader_from_now(topic: str) -> tuple[Consumer, dict[int, int]]:
    """A consumer of `topic` and where it starts: assigned at the high watermarks,
    outside any group, so it reads what is produced from now on (no rebalance to
    wait for, no "latest" resolved after a test already produced)."""
    consumer = Consumer(kafka_client(**{"group.id": "unused", "enable.auto.commit": False}))
    start = high_watermarks(consumer, topic)
    consumer.assign([TopicPartition(topic, p, offset) for p, offset in start.items()])
    return consumer, start


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Ask `probe` every 0.1 s until it answers something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def postgres_url(database: str = "postgres") -> str:
    host = os.environ.get("POSTGRES_HOST", "127.0.0.1")
    port = os.environ.get("POSTGRES_PORT", "5432")
    user = os.environ.get("POSTGRES_USER", "postgres")
    password = os.environ.get("POSTGRES_PASSWORD", "postgres")
    return f"postgresql://{user}:{password}@{host}:{port}/{database}"


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A new empty database named after `name` and this process (two test
    sessions on one machine never share one), dropped after."""
    name = f"{name}_{os.getpid()}"
    try:
        admin = psycopg.connect(postgres_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable ({error}); start the stack with `make start`")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        with psycopg.connect(postgres_url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def mimic_demo_url() -> Iterator[str]:
    """A database holding the MIMIC-III demo, loaded once per test session."""
    from test.utils.load_csv_folder import load_folder

    with scratch_database("river_test_mimic_demo") as url:
        load_folder(url, MIMIC_DEMO, replace=True)
        yield url


@pytest.fixture(scope="session")
def engine(mimic_demo_url: str) -> Iterator[Any]:
    """The mapping engine on the MIMIC-III demo with mimic-demo.json, in-process: what
    `river preview` gives, and what the services must give. (A module that needs the
    engine of its own settings defines an `engine` fixture of its own.)"""
    from river.concept_maps import ConceptMaps
    from river.engine import Engine
    from river.mapping import load_mappings
    from river.scripts import ScriptRegistry
    from river.validation import Validator

    scripts = ScriptRegistry.default()
    engine = Engine(
        load_mappings(MIMIC_DEMO_MAPPING, scripts),
        scripts,
        ConceptMaps.from_files(CONCEPT_MAPS),
        Validator(),
        source_db_url=mimic_demo_url,
    )
    yield engine
    engine.close()


def master_admin_token() -> str:
    """A token of Keycloak's own admin (master realm): another issuer, the admin API."""
    password = (STATE_DIR / "keycloak" / "secrets" / "admin-password").read_text().strip()
    answer = requests.post(
        f"{KEYCLOAK}/realms/master/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": "admin",
            "password": password,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]
