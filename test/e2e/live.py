"""A live pipeline for tests and benchmarks: the four services following the
committed connector files, pushed under names of their own (connector, slot,
publication, topics, SFTP folder) over a scratch source database of synthetic
MIMIC rows, with the example mappings (as .env.example's LIVE_SOURCES pairs them).

    with live_pipeline(workdir, topic_prefix, patients=20) as live:
        live.sql("UPDATE patients SET gender = 'M' WHERE subject_id = %s", 1000000)
        live.read("Patient", "example-patient", 1000000)

Everything made is removed at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests
from confluent_kafka.admin import AdminClient

from adapters.connect import push, remove
from river.identity import fhir_id
from river.mapping import load_mappings
from river.scripts import ScriptRegistry
from test.conftest import ROOT, kafka_client, scratch_database
from test.e2e.conftest import Pipeline, make_pipeline
from test.utils.create_file_stfp import make_upload_folder, remove_upload_folder
from test.utils.create_records_db import create_in_database

CONNECT = "http://127.0.0.1:8083"
SOURCES = ROOT / "kafka_connect_connectors" / "sources"
EXAMPLES = ROOT / "examples" / "mappings"


@dataclass
class Live:
    pipeline: Pipeline
    source_url: str
    suffix: str
    cdc: dict[str, Any]
    csv: dict[str, Any]
    ids: dict[str, Callable[[Any], str]]  # resource id -> its FHIR id rule
    sftp_root: str

    @property
    def cdc_batch(self) -> str:
        return f"live-{self.cdc['name']}"

    @property
    def csv_batch(self) -> str:
        return f"live-{self.csv['name']}"

    def sql(self, statement: str, *params: Any) -> None:
        with psycopg.connect(self.source_url, autocommit=True) as db:
            db.execute(statement, params)

    def read(self, resource_type: str, resource_id: str, key: Any) -> dict | None:
        answer = self.pipeline.request("GET", f"/fhir/{resource_type}/{self.ids[resource_id](key)}")
        return answer.json() if answer.status_code == 200 else None

    def progress(self, batch_id: str) -> dict[str, dict]:
        state = self.pipeline.request("GET", f"/batches/{batch_id}").json()
        return {r["resource_id"]: r for r in state["resources"]}

    def errors(self, batch_id: str) -> list[dict]:
        return self.pipeline.request("GET", f"/batches/{batch_id}/errors").json()["items"]


class StackMissing(Exception):
    """Kafka Connect does not answer: the stack is not running."""


@contextlib.contextmanager
def live_pipeline(tmp: Path, topic_prefix: str, patients: int = 20) -> Iterator[Live]:
    """The pipeline following its own two connectors; `patients` synthetic patients."""
    try:
        requests.get(CONNECT + "/connectors", timeout=5).raise_for_status()
    except requests.RequestException as error:
        raise StackMissing(
            f"Kafka Connect does not answer at {CONNECT} ({error}): run make start"
        ) from None
    suffix = uuid.uuid4().hex[:8]
    with (
        scratch_database("river_live_source") as source_url,
        scratch_database("river_live_store") as store_url,
    ):
        create_in_database(source_url, patients, seed=5, replace=True)
        mappings = tmp / "mappings"
        mappings.mkdir()
        for name in ("mimic-example.json", "mimic-csv-example.json"):
            shutil.copy(EXAMPLES / name, mappings / name)
        cdc = json.loads((SOURCES / "mimic-postgres-cdc.json").read_text())
        cdc["name"] = f"river-e2e-cdc-{suffix}"
        cdc["config"].update(
            {
                "database.hostname": "127.0.0.1",
                "database.dbname": source_url.rsplit("/", 1)[1],
                "slot.name": f"river_e2e_{suffix}",
                "publication.name": f"river_e2e_{suffix}",
                "topic.prefix": f"river-e2e-{suffix}",
            }
        )
        sftp_root = f"upload/data/river-e2e-{suffix}"
        csv = json.loads((SOURCES / "mimic-sftp-csv.json").read_text())
        csv["name"] = f"river-e2e-csv-{suffix}"
        csv["config"].update(
            {
                "camel.source.path.host": "127.0.0.1",
                "topics": f"river-e2e-{suffix}-csv",
                "camel.source.path.directoryName": f"{sftp_root}/data",
            }
        )
        files = [tmp / "cdc.json", tmp / "csv.json"]
        files[0].write_text(json.dumps(cdc))
        files[1].write_text(json.dumps(csv))
        make_upload_folder(sftp_root)
        plans = load_mappings(mappings, ScriptRegistry.default())
        ids = {
            plan.resource_id: (lambda key, ref=plan.logical_reference: fhir_id(ref, key))
            for plan in plans
        }
        pipeline = make_pipeline(tmp, topic_prefix, store_url, source_url)
        pipeline.env.update(
            {
                "MAPPINGS": str(mappings),
                "CONCEPT_MAPS": str(ROOT / "examples" / "concept_maps"),
                "LIVE_SOURCES": f"{files[0]}={mappings / 'mimic-example.json'},"
                f"{files[1]}={mappings / 'mimic-csv-example.json'}",
            }
        )
        r = Live(pipeline, source_url, suffix, cdc, csv, ids, sftp_root)
        try:
            out = io.StringIO()
            if push(CONNECT, files, out=out) != 0:
                raise StackMissing(f"the connectors do not run: {out.getvalue()}")
            pipeline.start()
            yield r
        finally:
            pipeline.close()
            _clean_up(r)


def _clean_up(r: Live) -> None:
    for name in (r.cdc["name"], r.csv["name"]):
        with contextlib.suppress(Exception):
            remove(CONNECT, name, r.source_url, out=io.StringIO())
    # Were the connector gone already, its slot would keep the server's WAL forever.
    with contextlib.suppress(Exception), psycopg.connect(r.source_url, autocommit=True) as db:
        slot = r.cdc["config"]["slot.name"]
        if db.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND NOT active", [slot]
        ).fetchone():
            db.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    with contextlib.suppress(Exception):
        admin = AdminClient(kafka_client())
        mine = [t for t in admin.list_topics(timeout=10).topics if f"river-e2e-{r.suffix}" in t]
        for future in admin.delete_topics(mine).values():
            future.result(10)
    with contextlib.suppress(Exception):
        remove_upload_folder(r.sftp_root)
