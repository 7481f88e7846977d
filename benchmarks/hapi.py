"""Loading into a FHIR server (HAPI FHIR), beside what the bare server takes.

    .venv/bin/python benchmarks/hapi.py [--patients 1000] [--bundle-sizes 100,250,500]
        [--concurrency 1,2,4] [--pipeline 250x2,500x2]
    (the stack and the local HAPI FHIR must run: make start, then bash infra/start.sh hapi)

The local HAPI FHIR server is EMPTIED ($expunge) before each timed run, so that every
run creates the same resources from nothing: point it at no other server (HAPI_URL).

1. Makes `--patients` synthetic patients in a scratch source database, and writes the
   example mapping's resources (Patient, Encounter, Condition, made by the mapping
   engine as `river preview` does) to a JSON-lines file, streamed, never all in memory.
2. The bare server: those resources in transaction Bundles of PUT entries (the
   loader's own entries, adapters/store/fhir_server.py), sent straight to HAPI from one
   client, N Bundles at once: resources per second for each Bundle size x concurrency.
3. The pipeline: the four services into HAPI with FHIR_SERVER_BUNDLE_SIZE and
   FHIR_SERVER_CONCURRENCY set to each of `--pipeline` (SIZExCONCURRENCY), one batch of
   the example mapping from POST /batch to completed; its share of the bare server at
   the same Bundle size and concurrency (target 80%).

HAPI's JVM is warmed first (its first writes run several times slower).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import orjson
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.store.fhir_server import FHIR_JSON, bundle, put_entry  # noqa: E402
from benchmarks.pipeline import cpu_seconds, machine_ticks, make_source  # noqa: E402
from river.engine import Engine  # noqa: E402
from river.settings import Settings  # noqa: E402
from test.conftest import STATE_DIR, kafka_topics, scratch_database  # noqa: E402
from test.e2e.conftest import EXAMPLE_MAPPING, example_pipeline  # noqa: E402
from test.e2e.test_hapi import HAPI, expunge  # noqa: E402

RESOURCES = ["example-patient", "example-encounter", "example-condition"]


class Usage:
    """CPU over a timed part: HAPI's (the local stack's process), given processes',
    and how busy the machine was (every process, ours or not)."""

    def __init__(self, pids: dict[str, int] | None = None) -> None:
        pid_file = STATE_DIR / "pids" / "hapi.pid"
        self.pids = dict(pids or {})
        if pid_file.is_file() and Path(f"/proc/{pid_file.read_text().strip()}").exists():
            self.pids["HAPI"] = int(pid_file.read_text().strip())
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.ticks = machine_ticks()

    def said(self) -> str:
        used = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        idle, total = (now - then for now, then in zip(machine_ticks(), self.ticks, strict=True))
        busy = 1 - idle / total if total else 0.0
        return (
            "CPU s: "
            + ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items())
            + f"; machine {busy:.0%} busy"
        )


def write_resources(source_url: str, path: Path) -> int:
    """The example mapping's resources over the source, one JSON document a line."""
    engine = Engine.from_settings(
        Settings(
            mappings=str(EXAMPLE_MAPPING),
            concept_maps=str(ROOT / "examples" / "concept_maps"),
            source_db_url=source_url,
        )
    )
    written = 0
    with path.open("wb") as out:
        for resource_id in RESOURCES:
            for outcome in engine.run(resource_id):
                if outcome.resource is not None:
                    out.write(orjson.dumps(outcome.resource) + b"\n")
                    written += 1
    engine.close()
    return written


def read_resources(path: Path, limit: int | None = None) -> Iterator[dict]:
    with path.open("rb") as lines:
        for line in islice(lines, limit):
            yield orjson.loads(line)


def empty_hapi() -> float:
    """Empty HAPI (every resource and its history); the seconds it took."""
    started = time.perf_counter()
    expunge()
    return time.perf_counter() - started


def bare(
    path: Path, size: int, concurrency: int, limit: int | None = None
) -> tuple[int, float, str]:
    """(resources, per second, CPU used): Bundles of `size` sent from one client, `concurrency` at
    once, each entry checked created (201)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=concurrency)
    session.mount("http://", adapter)
    session.mount("https://", adapter)

    def send(resources: list[dict]) -> int:
        answer = session.post(
            HAPI,
            data=orjson.dumps(bundle("transaction", [put_entry(r) for r in resources])),
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
            timeout=600,
        )
        answer.raise_for_status()
        statuses = [e["response"]["status"] for e in answer.json()["entry"]]
        assert all(s.startswith("201") for s in statuses), statuses[:3]
        return len(resources)

    def bundles() -> Iterator[list[dict]]:
        resources = read_resources(path, limit)
        while chunk := list(islice(resources, size)):
            yield chunk

    usage = Usage()
    started = time.perf_counter()
    sent = 0
    with ThreadPoolExecutor(concurrency) as pool:
        # At most 2 x concurrency Bundles read ahead: the file streams.
        pending = []
        for chunk in bundles():
            pending.append(pool.submit(send, chunk))
            if len(pending) >= 2 * concurrency:
                sent += pending.pop(0).result()
        sent += sum(future.result() for future in pending)
    seconds = time.perf_counter() - started
    session.close()
    return sent, sent / seconds, usage.said()


def pipeline_run(
    source_url: str, store_url: str, workdir: Path, size: int, concurrency: int
) -> tuple[int, float, dict, str]:
    """(resources, per second, counts, CPU used): one batch of the example mapping into HAPI."""
    prefix = f"bench-hapi-{uuid.uuid4().hex[:8]}-"
    workdir.mkdir()
    with kafka_topics(prefix):
        pipeline = example_pipeline(workdir, prefix, store_url, source_url)
        pipeline.env.update(
            {
                "FHIR_SERVER_URL": HAPI,
                "FHIR_SERVER_BUNDLE_SIZE": str(size),
                "FHIR_SERVER_CONCURRENCY": str(concurrency),
            }
        )
        with pipeline:
            for service in ("extractor", "transformer", "loader"):
                pipeline.wait_for_group(service, members=1)
            usage = Usage({name: p.pid for name, p in pipeline.processes.items()})
            started = time.perf_counter()
            state = pipeline.wait(pipeline.batch(RESOURCES), timeout=7200)
            seconds = time.perf_counter() - started
            used = usage.said() + "; " + loader_phases(pipeline.env, seconds)
    totals = {
        name: sum(r[name] for r in state["resources"])
        for name in ("expected", "created", "updated", "failed")
    }
    assert state["status"] == "completed", state
    loaded = totals["created"] + totals["updated"]
    return loaded, loaded / seconds, totals, used


def loader_phases(env: dict[str, str], seconds: float) -> str:
    """Where the loader's time went over the batch, from its own metrics: the writes to
    the server, the rest of its handler, Kafka's acknowledgements, commits, and what is
    left (waiting for messages, between polls)."""
    text = requests.get(f"http://127.0.0.1:{env['METRICS_PORT_LOADER']}/metrics", timeout=10).text
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, service = sample.name, sample.labels, sample.labels.get("service")
            if name == "fhir_river_poll_phase_duration_seconds_sum" and service == "loader":
                sums[labels["phase"]] = sample.value
            elif name == "fhir_river_store_write_duration_seconds_sum":
                sums[labels["operation"]] = sample.value
            elif name == "fhir_river_poll_duration_seconds_count" and service == "loader":
                sums["polls"] = sample.value
    writes = sums.get("upsert", 0.0)
    other = sums.get("handle", 0.0) - writes
    flush, commit = sums.get("flush", 0.0), sums.get("commit", 0.0)
    idle = seconds - writes - other - flush - commit
    return (
        f"the loader's {sums.get('polls', 0):.0f} polls: writes to the server {writes:.1f} s, "
        f"the rest of its handler {other:.1f} s, Kafka acknowledgements {flush:.1f} s, "
        f"commits {commit:.1f} s, waiting for messages {idle:.1f} s"
    )


def pairs(text: str) -> list[tuple[int, int]]:
    found = []
    for pair in text.split(","):
        size, _, concurrency = pair.partition("x")
        found.append((int(size), int(concurrency)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--bundle-sizes", default="100,250,500")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument(
        "--pipeline", default="250x2", help="SIZExCONCURRENCY pairs the pipeline runs with"
    )
    args = parser.parse_args()
    sizes = [int(v) for v in args.bundle_sizes.split(",")]
    concurrencies = [int(v) for v in args.concurrency.split(",")]
    runs = pairs(args.pipeline)
    print(f"HAPI FHIR at {HAPI}, emptied before each run; {os.cpu_count()} cores")
    with (
        scratch_database("river_bench_hapi_source") as source_url,
        scratch_database("river_bench_hapi_state") as store_url,
        tempfile.TemporaryDirectory() as workdir,
    ):
        make_source(source_url, args.patients, "patients,admissions,diagnoses_icd")
        documents = Path(workdir) / "resources.jsonl"
        total = write_resources(source_url, documents)
        print(f"documents: {total:,} resources of the example mapping")
        expunge()
        warmed, *_ = bare(documents, 250, 2, limit=min(total, 10_000))
        print(f"warm-up: {warmed:,} resources written (not counted)")
        bare_rates: dict[tuple[int, int], float] = {}
        for size in sizes:
            for concurrency in concurrencies:
                emptying = empty_hapi()
                sent, rate, used = bare(documents, size, concurrency)
                bare_rates[size, concurrency] = rate
                print(
                    f"bare HAPI, Bundles of {size} x {concurrency} at once: {sent:,} created "
                    f"at {rate:,.0f} resources/s (emptied in {emptying:.0f} s before); {used}"
                )
        best = max(bare_rates, key=bare_rates.get)
        print(f"bare HAPI, best: Bundles of {best[0]} x {best[1]} at once")
        for size, concurrency in runs:
            expunge()
            loaded, rate, totals, used = pipeline_run(
                source_url, store_url, Path(workdir) / f"pipeline-{size}x{concurrency}",
                size, concurrency,
            )  # fmt: skip
            if (size, concurrency) not in bare_rates:
                expunge()
                bare_rates[size, concurrency] = bare(documents, size, concurrency)[1]
            share = rate / bare_rates[size, concurrency]
            print(
                f"pipeline into HAPI, FHIR_SERVER_BUNDLE_SIZE={size} FHIR_SERVER_CONCURRENCY="
                f"{concurrency}: {loaded:,} loaded ({totals['created']:,} created, "
                f"{totals['failed']} failed) at {rate:,.0f} resources/s = {share:.0%} of the "
                f"bare server at the same settings (target 80%); "
                f"{rate / bare_rates[best]:.0%} of the best bare figure; {used}"
            )


if __name__ == "__main__":
    main()
