"""End-to-end speed of the pipeline, beside what its bare parts give here.

    .venv/bin/python benchmarks/pipeline.py [--patients 20000] [--transformers 1] [--loaders 1]
    (the stack must run: make start)

1. Makes `--patients` synthetic patients in a scratch source database.
2. Starts the four services (own topics, own scratch FHIR store; `--transformers`
   and `--loaders` processes of those two, sharing their topics' 3 partitions) and
   runs one batch of the example mapping (Patient, Encounter, Condition): resources
   per second from POST /batch to completed, each process's CPU time over the
   batch and its peak memory, and how busy the machine was meanwhile.
3. The bare parts with the same documents, read back from the pipeline's store:
   Kafka produce + consume (+ JSON parse) of the first 100,000, and the PostgreSQL
   store's bulk upsert of every one, in chunks of 1,000 mixing the resource types
   as the loader's polls do (each timed part starts after a CHECKPOINT).
4. Preview latency for 10 primary keys, p50 and p95 over 100 calls.
Target: 3,000 resources/s or more, and at least half of the slower bare part.

One process per service is the default because it measured best here: the
machine (2 cores) is busy throughout, so a second transformer or loader adds
no CPU, only overhead (smaller polls, more Kafka requests and commits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
from confluent_kafka import Consumer, Producer
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.store import open_store  # noqa: E402
from test.conftest import (  # noqa: E402
    kafka_client,  # noqa: E402
    kafka_topics,
    postgres_url,
    scratch_database,
)
from test.e2e.conftest import make_pipeline  # noqa: E402

EXAMPLE = ROOT / "examples" / "mappings" / "mimic-example.json"
RESOURCES = ["example-patient", "example-encounter", "example-condition"]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(idle, total) CPU ticks of the machine so far, every core together."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)  # idle + iowait


def make_source(url: str, patients: int, tables: str | None = None) -> None:
    """`patients` synthetic patients (seed 1) in the database at `url`, with the rows
    of `tables` (comma-separated; default all), made by test/utils/create_records_db.py."""
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "test/utils/create_records_db.py"),
            *("--patients", str(patients), "--seed", "1", "--db-url", url, "--quiet"),
            *(("--replace", "--tables", tables) if tables else ()),
        ],
        check=True,
    )
    print(f"source: {patients:,} synthetic patients made in {time.perf_counter() - t0:.0f} s")


def pipeline_run(
    source_url: str,
    store_url: str,
    prefix: str,
    workdir: Path,
    transformers: int = 1,
    loaders: int = 1,
) -> tuple[int, float, dict, dict, float, list]:
    pipeline = make_pipeline(workdir, prefix, store_url, source_url)
    pipeline.env["MAPPINGS"] = str(EXAMPLE)
    pipeline.env["CONCEPT_MAPS"] = str(ROOT / "examples" / "concept_maps")
    with pipeline:
        for i in range(2, transformers + 1):
            pipeline.start_copy("transformer", f"transformer-{i}")
        for i in range(2, loaders + 1):
            pipeline.start_copy("loader", f"loader-{i}")
        # Measured from a pipeline ready to work: every process has its partitions.
        for service, members in (
            ("extractor", 1),
            ("transformer", transformers),
            ("loader", loaders),
        ):
            pipeline.wait_for_group(service, members=members)
        checkpoint()
        cpu_before = {name: cpu_seconds(p.pid) for name, p in pipeline.processes.items()}
        ticks_before = machine_ticks()
        started = time.perf_counter()
        batch_id = pipeline.batch(RESOURCES)
        state = pipeline.wait(batch_id, timeout=7200)
        seconds = time.perf_counter() - started
        idle, total = (now - then for now, then in zip(machine_ticks(), ticks_before, strict=True))
        busy = 1 - idle / total if total else 0.0
        loaded = sum(r["loaded"] for r in state["resources"])
        cpu = {
            name: cpu_seconds(p.pid) - cpu_before[name] for name, p in pipeline.processes.items()
        }
        memory = {name: peak_rss_mb(p.pid) for name, p in pipeline.processes.items()}
        latencies = []
        with psycopg.connect(source_url) as connection:
            keys = [
                r[0]
                for r in connection.execute(
                    "SELECT subject_id FROM patients ORDER BY subject_id LIMIT 10"
                )
            ]
        for _ in range(100):
            t0 = time.perf_counter()
            answer = pipeline.request(
                "POST",
                "/preview",
                json={"resource_id": "example-patient", "primary_key_values": keys},
            )
            latencies.append(time.perf_counter() - t0)
            assert answer.status_code == 200 and len(answer.json()["instances"]) == 10
        return loaded, seconds, cpu, memory, busy, latencies


TABLES = ("patient", "encounter", "condition")


def stored_documents(store_url: str, chunk: int = 1000) -> Iterator[list[dict]]:
    """Every resource the pipeline loaded, in chunks of `chunk` that mix the
    resource types in the batch's proportions, as the loader's polls do; read
    with server-side cursors, so never the whole store in memory."""
    with psycopg.connect(store_url) as connection:
        counts = {
            table: connection.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()[0]
            for table in TABLES
        }
        total = sum(counts.values())
        cursors = []
        for table in TABLES:
            cursor = connection.cursor(name=f"bench_{table}")
            cursor.execute(sql.SQL("SELECT resource FROM {}").format(sql.Identifier(table)))
            cursors.append((cursor, max(1, round(chunk * counts[table] / total))))
        while True:
            documents = [row[0] for cursor, share in cursors for row in cursor.fetchmany(share)]
            if not documents:
                return
            yield documents


def checkpoint() -> None:
    """Write PostgreSQL's dirty pages now, so that each timed part starts from the
    same state and no part pays for the writes of the one before it."""
    with psycopg.connect(postgres_url(), autocommit=True) as connection:
        connection.execute("CHECKPOINT")


def bare_kafka(store_url: str, prefix: str, limit: int) -> tuple[int, float]:
    """(messages, per second): the first `limit` documents produced then consumed."""
    values = []
    for documents in stored_documents(store_url):
        values += [
            orjson.dumps({"batch_id": "b", "resource_id": "r", "fhir_object": d}) for d in documents
        ]
        if len(values) >= limit:
            break
    with kafka_topics(prefix, ("bare",)) as (topic,):
        values = values[:limit]
        return len(values), _produce_and_consume(values, topic)


def _produce_and_consume(values: list[bytes], topic: str) -> float:
    producer = Producer(kafka_client(**{"acks": "all", "linger.ms": 5, "compression.type": "lz4"}))
    consumer = Consumer(kafka_client(**{"group.id": topic, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    started = time.perf_counter()
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, str(i).encode())
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush()
    received = 0
    while received < len(values):
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                orjson.loads(message.value())
                received += 1
    seconds = time.perf_counter() - started
    consumer.close()
    return len(values) / seconds


def bare_store(store_url: str) -> tuple[int, float]:
    """(resources, per second): every resource the pipeline loaded, upserted again
    into an empty store in the same chunks; only the store's `load` is timed."""
    with scratch_database("river_bench_bare_store") as url:
        store = open_store(url)
        store.load("bench", [])  # makes the schema outside the timing
        checkpoint()
        loaded, seconds = 0, 0.0
        for documents in stored_documents(store_url):
            items = [("r", d) for d in documents]
            started = time.perf_counter()
            store.load("bench", items)
            seconds += time.perf_counter() - started
            loaded += len(items)
        store.close()
    return loaded, loaded / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--transformers", type=int, default=1, help="transformer processes")
    parser.add_argument("--loaders", type=int, default=1, help="loader processes")
    args = parser.parse_args()
    if args.transformers < 1 or args.loaders < 1:
        parser.error("--transformers and --loaders take 1 or more")
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    with kafka_topics(prefix):
        with (
            scratch_database("river_bench_source") as source_url,
            scratch_database("river_bench_store") as store_url,
        ):
            make_source(source_url, args.patients)
            with tempfile.TemporaryDirectory() as workdir:
                loaded, seconds, cpu, memory, busy, latencies = pipeline_run(
                    source_url,
                    store_url,
                    prefix,
                    Path(workdir),
                    transformers=args.transformers,
                    loaders=args.loaders,
                )
            rate = loaded / seconds
            kafka_messages, kafka_rate = bare_kafka(store_url, prefix, 100_000)
            stored, store_rate = bare_store(store_url)
        ceiling = min(kafka_rate, store_rate)
        quantiles = statistics.quantiles(latencies, n=20)
        print(
            f"pipeline: api, extractor, {args.transformers} transformer(s), "
            f"{args.loaders} loader(s), {os.cpu_count()} cores"
        )
        print(
            f"pipeline: {loaded:,} resources in {seconds:.1f} s = {rate:,.0f} resources/s "
            "(target 3,000)"
        )
        print(
            "CPU time over the batch (s): "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
            + f"; the machine was {busy:.0%} busy (every process, ours or not)"
        )
        print(
            f"bare Kafka produce+consume+parse of {kafka_messages:,} of the same messages: "
            f"{kafka_rate:,.0f} messages/s"
        )
        print(
            f"bare PostgreSQL store bulk upsert of the same {stored:,} resources "
            f"(chunks of 1,000, types mixed as in the batch): {store_rate:,.0f} resources/s"
        )
        print(f"pipeline / slower bare part: {rate / ceiling:.0%} (target 50%)")
        print("peak memory (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
        print(
            f"preview of 10 keys: p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p95 {quantiles[18] * 1000:.0f} ms (target p95 < 300 ms)"
        )


if __name__ == "__main__":
    main()
