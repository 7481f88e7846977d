"""The pipeline on Kafka's SASL/SCRAM listener: the services authenticate as the local
stack's SCRAM user (KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT, SCRAM-SHA-512, the password
make start generated into the stack's state), a batch goes through with exact counts, and
a wrong password is refused with one sentence that names the account, never the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from test.conftest import ROOT, scratch_database
from test.e2e.conftest import Pipeline, make_pipeline
from test.integration.test_engine_mimic import DIAGNOSIS, EXPECTED_COUNT_SQL, FEAT_6
from test.integration.test_stack import S

pytestmark = pytest.mark.stack

PROCEDURES = "cktlnp0pj00bx0mmz791gpi55"
RESOURCES = [FEAT_6, DIAGNOSIS, PROCEDURES]
SASL = f"127.0.0.1:{S['KAFKA_SASL_PORT']}"
USER = S.get("KAFKA_SASL_USERNAME") or "fhir-river"
STATE_DIR = (ROOT / S["STATE_DIR"]).resolve()
PASSWORD_FILE = STATE_DIR / "kafka" / "sasl" / f"{USER}.password"
WRONG = "not-the-password-0123456789"


def password() -> str:
    if not PASSWORD_FILE.exists():
        pytest.fail(f"{PASSWORD_FILE} is missing: start the stack with `make start`")
    return PASSWORD_FILE.read_text().strip()


def sasl_env(secret: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": SASL,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": secret,
    }


@pytest.fixture(scope="module")
def sasl_pipeline(tmp_path_factory, topic_prefix, mimic_demo_url) -> Iterator[Pipeline]:
    """The four services on the SASL listener only (it is their one bootstrap server)."""
    with scratch_database("river_sasl_store") as store_url:
        pipeline = make_pipeline(
            tmp_path_factory.mktemp("sasl"), topic_prefix, store_url, mimic_demo_url
        )
        pipeline.env.update(sasl_env(password()))
        with pipeline:
            yield pipeline


def test_the_sasl_listener_takes_the_stack_user_and_refuses_a_wrong_password():
    def admin(secret: str) -> tuple[AdminClient, list[KafkaError]]:
        errors: list[KafkaError] = []
        config = {
            "bootstrap.servers": SASL,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": USER,
            "sasl.password": secret,
            "error_cb": errors.append,
        }
        return AdminClient(config), errors

    right, _ = admin(password())
    assert right.list_topics(timeout=10).brokers
    wrong, errors = admin(WRONG)
    with pytest.raises(Exception):  # noqa: B017, PT011 (librdkafka's metadata failure)
        wrong.list_topics(timeout=3)
    wrong.poll(0)
    assert KafkaError._AUTHENTICATION in [e.code() for e in errors]
    # Without credentials the SASL listener answers nothing either.
    anonymous = AdminClient({"bootstrap.servers": SASL})
    with pytest.raises(Exception):  # noqa: B017, PT011
        anonymous.list_topics(timeout=3)


def test_a_batch_goes_through_the_pipeline_over_sasl_scram(sasl_pipeline, mimic_demo_url):
    with psycopg.connect(mimic_demo_url) as db:
        expected = {r: db.execute(EXPECTED_COUNT_SQL[r]).fetchone()[0] for r in RESOURCES}
    batch_id = sasl_pipeline.batch(RESOURCES)
    state = sasl_pipeline.wait(batch_id, timeout=240)
    assert state["status"] == "completed", state
    for resource in state["resources"]:
        n = expected[resource["resource_id"]]
        counts = tuple(
            resource[k]
            for k in ("expected", "extracted", "transformed", "loaded", "created", "failed")
        )
        assert counts == (n, n, n, n, n, 0), resource
    for resource_id, n in expected.items():
        resource_type = {FEAT_6: "Patient", DIAGNOSIS: "Condition", PROCEDURES: "Procedure"}[
            resource_id
        ]
        assert sasl_pipeline.total(resource_type, resource_id) == n
    # The services talked to the SASL listener alone, and the password is in no log.
    for name in ("api", "extractor", "transformer", "loader"):
        log = sasl_pipeline.log(name)
        assert password() not in log
        assert "refused" not in log, log[-2000:]


def test_a_service_with_a_wrong_password_stops_with_one_sentence(sasl_pipeline, tmp_path: Path):
    env = {**sasl_pipeline.env, **sasl_env(WRONG)}
    log = tmp_path / "loader.log"
    started = time.monotonic()
    with log.open("wb") as out:
        code = subprocess.run(
            [sys.executable, "-m", "loader"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=60,
        ).returncode
    text = log.read_text()
    assert code == 1, text
    assert time.monotonic() - started < 30, "a refusal is said at once, not after retries"
    last = [line for line in text.splitlines() if line.strip()][-1]
    assert " ERROR loader stops: Kafka at " + SASL + " refused the credentials of" in last, last
    assert f"KAFKA_SASL_USERNAME={USER} (SCRAM-SHA-512)" in last
    assert "Authentication failed" in last
    assert last.endswith("check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"), last
    assert WRONG not in text


def test_the_api_with_a_wrong_password_names_the_refusal(sasl_pipeline, tmp_path: Path):
    """/health names the refusal; a batch gets a 503 that says it (not a timeout)."""
    from test.e2e.conftest import free_port

    env = {**sasl_pipeline.env, **sasl_env(WRONG), "API_PORT": str(free_port())}
    api = Pipeline(env, tmp_path, sasl_pipeline.store)
    api.start("api")
    try:
        deadline = time.monotonic() + 30
        while True:
            health = api.request("GET", "/health")
            problems = health.json().get("problems", [])
            if any("refused the credentials" in p for p in problems) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert health.status_code == 503
        assert any(
            p.startswith(f"Kafka at {SASL} refused the credentials of KAFKA_SASL_USERNAME={USER}")
            for p in problems
        ), problems
        answer = api.request("POST", "/batch", json={"resource_ids": [FEAT_6]})
        assert answer.status_code == 503, answer.text
        assert "refused the credentials" in answer.text
        assert WRONG not in answer.text and WRONG not in health.text
    finally:
        api.stop()
    assert WRONG not in api.log("api")


def test_the_stack_password_is_kept_private():
    assert os.stat(PASSWORD_FILE).st_mode & 0o077 == 0
    assert os.stat(PASSWORD_FILE.parent).st_mode & 0o077 == 0
    # make start never prints it (its logs neither).
    for log in (STATE_DIR / "logs").glob("*.log"):
        assert password() not in log.read_text(errors="replace"), log
