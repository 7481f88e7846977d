"""The whole pipeline as processes: api, extractor, transformer, loader, started
here against the real stack (Kafka, PostgreSQL; FerretDB for the MongoDB store),
on topics of their own (a unique prefix) and a FHIR store database of their own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from adapters.store import FhirStore, open_store
from cli.login import Login
from test.conftest import (
    CONCEPT_MAPS,
    KAFKA,
    MIMIC_DEMO_MAPPING,
    ROOT,
    kafka_client,
    kafka_topics,
    scratch_database,
    scripts_client,
    scripts_settings,
)

SERVICES = ("api", "extractor", "transformer", "loader")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RESOURCE_TAG = "http://terminology.arkhn.org/CodeSystem/resource"


class Pipeline:
    """The four services as a user runs them, and ways to poke at them."""

    def __init__(self, env: dict[str, str], workdir: Path, store: FhirStore) -> None:
        self.env = env
        self.workdir = workdir
        self.store = store
        self.url = f"http://127.0.0.1:{env['API_PORT']}"
        self._login = Login(scripts_settings())  # the client its env gives `river` too
        self.processes: dict[str, subprocess.Popen] = {}  # key -> process
        self.services: dict[str, str] = {}  # key -> the service it runs (python -m <service>)

    def start(self, *names: str) -> None:
        """Start services by name (all four if none), each keyed by its name."""
        for name in names or SERVICES:
            self._spawn(name, name)
        if "api" in (names or SERVICES):
            self._wait_for_api()

    def start_copy(self, service: str, key: str) -> None:
        """Another process of `service`, kept under `key` (its log: `<key>.log`): it joins
        the service's consumer group, so the copies share the topic's partitions."""
        assert service in SERVICES and service != "api", service
        assert key not in self.processes, f"{key} is running"
        self._spawn(service, key)

    def _spawn(self, service: str, key: str) -> None:
        log = open(self.workdir / f"{key}.log", "ab")  # noqa: SIM115 (kept by the process)
        self.processes[key] = subprocess.Popen(
            [sys.executable, "-m", service],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.services[key] = service

    def stop(self, *names: str, sig: int = signal.SIGTERM, timeout: float = 30) -> dict[str, int]:
        """Stop processes by key (every one if none); their exit codes (-9: one that
        had not exited `timeout` seconds after `sig`, killed)."""
        codes = {}
        for name in names or tuple(self.processes):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            process.send_signal(sig)
            try:
                codes[name] = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        return codes

    def close(self) -> None:
        """Stop every process, then close the store client."""
        self.stop()
        self.store.close()

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def restart(self, name: str, sig: int = signal.SIGTERM) -> None:
        service = self.services.get(name, name)
        self.stop(name, sig=sig)
        if service == name:
            self.start(name)
        else:
            self.start_copy(service, name)

    def stored(self, resource_type: str, resource_id: str) -> list[dict]:
        """Every resource of `resource_type` the store holds for one mapping resource
        (its tag), read over HTTP a page at a time."""
        found: list[dict] = []
        while True:
            page = self.request(
                "GET",
                f"/fhir/{resource_type}",
                params={
                    "_tag": f"{RESOURCE_TAG}|{resource_id}",
                    "_count": 1000,
                    "_offset": len(found),
                },
            ).json()
            found += [entry["resource"] for entry in page.get("entry", [])]
            if len(found) >= page["total"] or not page.get("entry"):
                return found

    def total(self, resource_type: str, resource_id: str) -> int:
        """How many resources the store holds for one mapping resource (`_summary=count`)."""
        answer = self.request(
            "GET",
            f"/fhir/{resource_type}",
            params={"_tag": f"{RESOURCE_TAG}|{resource_id}", "_summary": "count"},
        )
        return answer.json()["total"]

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request to the API, as the local stack's scripts client (an operator)."""
        headers = {"Authorization": f"Bearer {self._login.access_token()}"}
        headers.update(kwargs.pop("headers", None) or {})
        return requests.request(method, self.url + path, timeout=30, headers=headers, **kwargs)

    def batch(self, resource_ids: list[str], **body: Any) -> str:
        answer = self.request("POST", "/batch", json={"resource_ids": resource_ids, **body})
        assert answer.status_code == 200, answer.text
        return answer.json()["batch_id"]

    def wait(
        self,
        batch_id: str,
        timeout: float = 300,
        until: tuple[str, ...] = ("completed", "failed", "canceled"),
    ) -> dict:
        deadline = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < deadline:
            try:
                state = self.request("GET", f"/batches/{batch_id}").json()
            except requests.ConnectionError:  # the api restarting: ask again
                time.sleep(0.5)
                continue
            if state["status"] in until:
                return state
            time.sleep(0.5)
        logs = {name: self.log(name)[-2000:] for name in dict.fromkeys([*SERVICES, *self.services])}
        raise AssertionError(
            f"batch {batch_id} still {state['status']} after {timeout} s: {state}\n{logs}"
        )

    def wait_for_extraction(self, batch_id: str, at_least: int = 1, timeout: float = 60) -> None:
        """Until the batch has extracted `at_least` instances: it is in the middle."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.request("GET", f"/batches/{batch_id}").json()
            if sum(r["extracted"] for r in state["resources"]) >= at_least:
                return
            assert time.monotonic() < deadline, f"batch {batch_id} extracted nothing in {timeout} s"
            time.sleep(0.05)

    def wait_for_group(
        self, service: str, members: int = 1, timeout: float = 60
    ) -> dict[str, list[int]]:
        """member id -> its partitions, once the consumer group of `service` is stable
        with `members` members (its processes), each owning at least one partition."""
        group = f"{self.env['KAFKA_TOPIC_PREFIX']}fhir-river-{service}"
        admin = AdminClient(kafka_client())
        deadline = time.monotonic() + timeout
        while True:
            description = admin.describe_consumer_groups([group])[group].result(10)
            owned = {
                m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
                for m in description.members
            }
            if (
                description.state == ConsumerGroupState.STABLE
                and len(owned) == members
                and all(owned.values())
            ):
                return owned
            assert time.monotonic() < deadline, f"group {group}: {description.state}, {owned}"
            time.sleep(0.5)

    def _wait_for_api(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health").status_code in (200, 503):
                    return
            except requests.ConnectionError:
                time.sleep(0.3)
        raise AssertionError(f"the api did not answer within 60 s:\n{self.log('api')[-3000:]}")


@pytest.fixture(scope="module")
def topic_prefix() -> Iterator[str]:
    prefix = f"e2e-{uuid.uuid4().hex[:8]}-"
    with kafka_topics(prefix):
        yield prefix


def make_pipeline(tmp: Path, prefix: str, store_url: str, source_url: str) -> Pipeline:
    mapping = tmp / "mimic-demo.json"
    shutil.copy(MIMIC_DEMO_MAPPING, mapping)  # a copy, so a test can fix it
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "KAFKA_TOPIC_PREFIX": prefix,
        "FHIR_STORE_URL": store_url,
        "SOURCE_DB_URL": source_url,
        "MAPPINGS": str(mapping),
        "CONCEPT_MAPS": str(CONCEPT_MAPS),
        "FHIR_API_URL": "",
        "PYROG_API_URL": "",
        "LIVE_SOURCES": "",  # batches only; test_live.py follows connectors
        "API_PORT": str(free_port()),
        # Metrics of their own, beside the local stack's (test_metrics.py reads them).
        **{f"METRICS_PORT_{name.upper()}": str(free_port()) for name in SERVICES},
        "MONGO_BULK_SIZE": "40",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "PYTHONUNBUFFERED": "1",
        **scripts_client(),  # the API checks tokens (API_AUTH=oidc), as a hospital's does
    }
    return Pipeline(env, tmp, open_store(store_url, bulk_size=40))


EXAMPLE_MAPPING = ROOT / "examples" / "mappings" / "mimic-example.json"


def example_pipeline(tmp: Path, prefix: str, store_url: str, source_url: str) -> Pipeline:
    """`make_pipeline` with the example mapping (Patient, Encounter, Condition; a copy
    in tmp/mappings, so a test can fix it) and its concept maps."""
    pipeline = make_pipeline(tmp, prefix, store_url, source_url)
    mappings = tmp / "mappings"
    mappings.mkdir()
    shutil.copy(EXAMPLE_MAPPING, mappings)
    pipeline.env.update(
        {"MAPPINGS": str(mappings), "CONCEPT_MAPS": str(ROOT / "examples" / "concept_maps")}
    )
    return pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, topic_prefix, mimic_demo_url) -> Iterator[Pipeline]:
    """The pipeline on the PostgreSQL store."""
    with (
        scratch_database("river_e2e_fhirstore") as store_url,
        make_pipeline(
            tmp_path_factory.mktemp("pipeline"), topic_prefix, store_url, mimic_demo_url
        ) as pipeline,
    ):
        yield pipeline
