"""Memory of each service along a large batch: does it stay flat?

    .venv/bin/python benchmarks/memory.py [--patients 1000000]   (make start first)

Makes `--patients` synthetic patients (only the tables the example mapping
reads: patients, admissions, diagnoses_icd) in a scratch database, runs one
batch of the example mapping (Patient, Encounter, Condition: about 19 resources
per patient) through the four services, and samples each service's resident
memory every `--every` seconds. Prints the samples (memory against progress),
then each service's peak (VmHWM) and its memory at 10% and at 90% of the batch:
flat means the second is not above the first by more than noise.

The topics keep Kafka's default retention: a retention shorter than the
transformer's lag behind the extractor (which reads much faster) deletes work
not yet consumed, as a 10-minute retention did to a first 1,000,000-patient run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline import make_source  # noqa: E402
from test.conftest import kafka_topics, scratch_database  # noqa: E402
from test.e2e.conftest import make_pipeline  # noqa: E402

EXAMPLE = ROOT / "examples" / "mappings" / "mimic-example.json"
RESOURCES = ["example-patient", "example-encounter", "example-condition"]
SERVICES = ("api", "extractor", "transformer", "loader")


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    args = parser.parse_args()
    prefix = f"bench-mem-{uuid.uuid4().hex[:8]}-"
    with (
        tempfile.TemporaryDirectory() as tmp,
        kafka_topics(prefix),
        scratch_database("river_bench_mem_source") as source_url,
        scratch_database("river_bench_mem_store") as store_url,
    ):
        make_source(source_url, args.patients, "patients,admissions,diagnoses_icd")
        pipeline = make_pipeline(Path(tmp), prefix, store_url, source_url)
        pipeline.env["MAPPINGS"] = str(EXAMPLE)
        pipeline.env["CONCEPT_MAPS"] = str(ROOT / "examples" / "concept_maps")
        samples: list[tuple[float, float, dict[str, float]]] = []
        with pipeline:
            started = time.perf_counter()
            batch_id = pipeline.batch(RESOURCES)
            print(f"{'s':>6} {'done':>6} " + " ".join(f"{s:>11}" for s in SERVICES) + "   (MB)")
            while True:
                time.sleep(args.every)
                state = pipeline.request("GET", f"/batches/{batch_id}").json()
                expected = sum(r["expected"] or 0 for r in state["resources"])
                done = sum(r["loaded"] + r["failed"] for r in state["resources"])
                share = done / expected if expected else 0.0
                rss = {s: memory_mb(p.pid) for s, p in pipeline.processes.items()}
                samples.append((time.perf_counter() - started, share, rss))
                print(
                    f"{samples[-1][0]:6.0f} {share:6.1%} "
                    + " ".join(f"{rss[s]:11.0f}" for s in SERVICES)
                )
                if state["status"] != "running":
                    break
            seconds = time.perf_counter() - started
            loaded = sum(r["loaded"] for r in state["resources"])
            peaks = {s: memory_mb(p.pid, "VmHWM") for s, p in pipeline.processes.items()}
    print(
        f"\nbatch {state['status']}: {loaded:,} resources in {seconds:.0f} s"
        f" ({loaded / seconds:,.0f}/s)"
    )

    def at(share: float) -> dict[str, float]:
        return min(samples, key=lambda sample: abs(sample[1] - share))[2]

    early, late = at(0.1), at(0.9)
    for service in SERVICES:
        print(
            f"{service:>11}: peak {peaks[service]:5.0f} MB; at 10% {early[service]:5.0f} MB,"
            f" at 90% {late[service]:5.0f} MB"
        )


if __name__ == "__main__":
    main()
