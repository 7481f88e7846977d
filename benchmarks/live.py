"""Latency of the live path: a source change, or a CSV file, to FHIR in the store.

    .venv/bin/python benchmarks/live.py [--changes 1000] [--rate 20]   (make start first)

Runs the four services following their own Debezium and SFTP CSV connectors over
a scratch source database (test/e2e/live.py), and measures from the source's
commit (or the file's upload) to the `load` event of the resource, which the
loader produces once the store has committed it (readable from then on):

1. `--changes` patients inserted one by one at `--rate` per second: p50, p95, max.
2. The sustained rate: steps of rising rates (10 s each); a rate is followed when
   its p95 latency stays under 1 s and the lag at the end of its step is gone
   within 1 s (it did not grow).
3. A CSV file of `--csv-rows` patients: from the end of its upload to the last
   of its resources loaded.
Target: p95 under 1 second.

With `--during-batch PATIENTS`, it measures instead what a live change waits while a
large batch runs: the source holds PATIENTS synthetic patients (20,000 give about
400,000 resources with the example mapping), a batch of the example's three
resources is started, and `--changes` inserts are made at `--rate` while it runs:
p50, p95 and max of those made before it ended, beside the batch's own rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import psycopg
from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from test.conftest import kafka_client, kafka_topics  # noqa: E402
from test.e2e.live import Live, live_pipeline  # noqa: E402
from test.utils.create_file_stfp import upload, write_patients_csv  # noqa: E402

PATIENT = "example-patient"
CSV_PATIENT = "example-csv-patient"


class LoadWatch:
    """Follows the `load` topic in a thread: when each FHIR id was loaded first."""

    def __init__(self, topic: str) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                **kafka_client(),
                "group.id": f"bench-live-{uuid.uuid4().hex}",
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe([topic], on_assign=lambda c, parts: self._assigned.set())
        self._assigned = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._assigned.wait(30):
            raise SystemExit(f"no partition of {topic} assigned within 30 s")

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(1000, 0.01):
                if message.error() is None:
                    now = time.perf_counter()
                    self.seen.setdefault(orjson.loads(message.value())["id"], now)
        self._consumer.close()

    def wait(self, ids: list[str], timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if all(i in self.seen for i in ids):
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def insert(db: psycopg.Connection, subjects: list[int]) -> None:
    with db.transaction():
        db.cursor().executemany(
            "INSERT INTO patients (row_id, subject_id, gender, dob, expire_flag)"
            " VALUES (%s, %s, 'F', '2070-05-01', 0)",
            [(s, s) for s in subjects],
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def steady(live: Live, watch: LoadWatch, db: psycopg.Connection, first: int, n: int, rate: float):
    """`n` inserts at `rate` per second; the latency of each, in seconds."""
    committed: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(n):
        pause = start + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        subject = first + i
        insert(db, [subject])
        committed[live.ids[PATIENT](subject)] = time.perf_counter()
    if not watch.wait(list(committed), 60):
        missing = sum(1 for i in committed if i not in watch.seen)
        raise SystemExit(f"{missing} of {n} changes not loaded within 60 s of the last")
    return [watch.seen[i] - t for i, t in committed.items()]


def step(
    live: Live, watch: LoadWatch, db: psycopg.Connection, first: int, rate: int, seconds: float
):
    """Inserts at `rate` per second for `seconds` (a transaction every 50 ms); the lag
    left at the end, and how long it takes to be gone."""
    committed: dict[str, float] = {}
    start = time.perf_counter()
    subject = first
    tick = 0
    while time.perf_counter() - start < seconds:
        tick += 1
        due = int(rate * 0.05 * tick) - int(rate * 0.05 * (tick - 1))
        subjects = list(range(subject, subject + due))
        subject += due
        if subjects:
            insert(db, subjects)
            now = time.perf_counter()
            committed.update((live.ids[PATIENT](s), now) for s in subjects)
        pause = start + 0.05 * tick - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    end = time.perf_counter()
    lag = sum(1 for i in committed if i not in watch.seen)
    caught = watch.wait(list(committed), 60)
    drained = time.perf_counter() - end
    latencies = [watch.seen[i] - t for i, t in committed.items() if i in watch.seen]
    return subject, len(committed) / (end - start), lag, drained if caught else None, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="changes per second (steady)")
    parser.add_argument(
        "--rates", default="50,100,200,400,800,1600,3200,6400", help="sustained-rate steps"
    )
    parser.add_argument("--csv-rows", type=int, default=1000)
    parser.add_argument(
        "--during-batch", type=int, default=0, metavar="PATIENTS", help="see the module's doc"
    )
    args = parser.parse_args()
    prefix = f"bench-live-{uuid.uuid4().hex[:8]}-"
    with (
        tempfile.TemporaryDirectory() as tmp,
        kafka_topics(prefix),
        live_pipeline(Path(tmp), prefix, patients=args.during_batch or 100) as live,
    ):
        if args.during_batch:
            during_batch(live, prefix, args.changes, args.rate)
            return
        watch = LoadWatch(f"{prefix}load")
        db = psycopg.connect(live.source_url, autocommit=True)
        try:
            # Warm up: the first change opens connections and compiles the plan.
            insert(db, [9_000_000])
            watch.wait([live.ids[PATIENT](9_000_000)], 60)

            print(f"1. {args.changes:,} inserts, one per transaction, at {args.rate:g}/s")
            latencies = steady(live, watch, db, 9_000_001, args.changes, args.rate)
            print(
                f"   commit -> loaded: p50 {statistics.median(latencies) * 1000:.0f} ms,"
                f" p95 {percentile(latencies, 0.95) * 1000:.0f} ms,"
                f" max {max(latencies) * 1000:.0f} ms   (target: p95 under 1,000 ms)"
            )

            print("2. sustained rate: 10 s per step, a transaction every 50 ms")
            subject = 9_100_000
            followed = 0
            for rate in (int(r) for r in args.rates.split(",")):
                subject, achieved, lag, drained, lat = step(live, watch, db, subject, rate, 10)
                p95 = percentile(lat, 0.95) if lat else float("inf")
                ok = drained is not None and drained < 1.0 and p95 < 1.0
                followed = rate if ok else followed
                print(
                    f"   {rate:>5}/s offered, {achieved:7.0f}/s committed: lag at the end {lag:>5},"
                    f" gone in {drained if drained is not None else float('inf'):5.1f} s,"
                    f" p95 {p95 * 1000:6.0f} ms"
                    f" -> {'followed' if ok else 'lag grows'}"
                )
                if not ok:
                    break
            print(f"   sustained: {followed:,} changes/s followed without growing lag")

            print(f"3. a CSV file of {args.csv_rows:,} patients over SFTP")
            first = 9_500_000
            csv = write_patients_csv(
                Path(tmp) / "patients.csv", args.csv_rows, seed=3, first_id=first
            )
            ids = [live.ids[CSV_PATIENT](first + i) for i in range(args.csv_rows)]
            upload(csv, f"{live.sftp_root}/data")
            uploaded = time.perf_counter()
            if not watch.wait(ids, 120):
                raise SystemExit("the CSV's resources were not all loaded within 120 s")
            times = sorted(watch.seen[i] - uploaded for i in ids)
            print(
                f"   upload -> loaded: first {times[0] * 1000:.0f} ms,"
                f" p50 {statistics.median(times) * 1000:.0f} ms, last {times[-1] * 1000:.0f} ms"
            )
        finally:
            db.close()
            watch.close()


def during_batch(live: Live, prefix: str, changes: int, rate: float) -> None:
    watch = LoadWatch(f"{prefix}load")
    db = psycopg.connect(live.source_url, autocommit=True)
    try:
        insert(db, [9_000_000])  # warm up, as above
        watch.wait([live.ids[PATIENT](9_000_000)], 60)
        resources = ["example-patient", "example-encounter", "example-condition"]
        answer = live.pipeline.request("POST", "/batch", json={"resource_ids": resources})
        batch_id = answer.json()["batch_id"]
        started = time.perf_counter()
        live.pipeline.wait_for_extraction(batch_id, at_least=5000)
        print(f"4. {changes:,} inserts at {rate:g}/s while a batch of {resources} runs")
        committed_at: dict[str, float] = {}
        first = 9_000_001
        begin = time.perf_counter()
        for i in range(changes):
            pause = begin + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            insert(db, [first + i])
            committed_at[live.ids[PATIENT](first + i)] = time.perf_counter()
        state = live.pipeline.wait(batch_id, timeout=3600)
        ended = time.perf_counter()
        if not watch.wait(list(committed_at), 60):
            raise SystemExit("some live changes were not loaded within 60 s")
        during = [watch.seen[i] - t for i, t in committed_at.items() if t < ended]
        total = sum(r["expected"] for r in state["resources"])
        print(
            f"   the batch: {total:,} resources in {ended - started:.0f} s"
            f" ({total / (ended - started):,.0f}/s), {state['status']}"
        )
        print(
            f"   {len(during):,} inserts made while it ran, commit -> loaded:"
            f" p50 {statistics.median(during) * 1000:.0f} ms,"
            f" p95 {percentile(during, 0.95) * 1000:.0f} ms,"
            f" max {max(during) * 1000:.0f} ms   (target: p95 under 1,000 ms)"
        )
    finally:
        db.close()
        watch.close()


if __name__ == "__main__":
    main()
