"""How fast the console shows its pages with a store of 10,000 batches and 100,000
errors, in Debian's Chromium (Playwright), beside the API requests each page makes.

    .venv/bin/python benchmarks/console.py [--batches 10000] [--errors 100000] [--runs 5]
    (the stack must run: make start)

A scratch FHIR store is filled in SQL (batches of the example mapping's three
resources, completed, every 20th failed with errors; one batch holding `--errors`
errors), the API runs over it (`python -m api`, API_AUTH=none on 127.0.0.1, the
example mappings over the stack's source) and each page is opened `--runs` times:
from navigation to its first content (the page's table or its empty state), then
the bare API request behind it. Target: every page under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.store.postgres import PostgresStore  # noqa: E402
from test.conftest import postgres_url, scratch_database  # noqa: E402

RESOURCES = ["example-patient", "example-encounter", "example-condition"]
BIG = "b-errors"


def fill(url: str, batches: int, errors: int) -> None:
    store = PostgresStore(url)
    store.create_batch(BIG, RESOURCES)  # makes the schema too
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO river_batch (batch_id, resource_ids, created_at, updated_at)"
            " SELECT 'b-' || i, %s::jsonb, now() - make_interval(secs => i),"
            " now() - make_interval(secs => i) + interval '40 seconds'"
            " FROM generate_series(1, %s) i",
            (f'["{RESOURCES[0]}", "{RESOURCES[1]}", "{RESOURCES[2]}"]', batches),
        )
        conn.execute(
            "INSERT INTO river_batch_resource (batch_id, resource_id, expected, extracted,"
            " transformed, created, updated, failed)"
            " SELECT 'b-' || i, r, 1000, 1000, 1000 - (i %% 20 = 0)::int * 10, 0,"
            " 1000 - (i %% 20 = 0)::int * 10, (i %% 20 = 0)::int * 10"
            " FROM generate_series(1, %s) i, unnest(%s::text[]) r",
            (batches, RESOURCES),
        )
        conn.execute(  # every 50th batch: a resource could not run at all (failed)
            "UPDATE river_batch_resource SET error = 'table public.labevents does not exist'"
            " WHERE resource_id = %s AND batch_id IN"
            " (SELECT 'b-' || i FROM generate_series(50, %s, 50) i)",
            (RESOURCES[2], batches),
        )
        conn.execute(
            "UPDATE river_batch_resource SET expected = %s, extracted = %s, failed = %s"
            " WHERE batch_id = %s",
            (errors // 3, errors // 3, errors // 3, BIG),
        )
        conn.execute(
            "INSERT INTO river_batch_error (batch_id, resource_id, primary_key_value, stage,"
            " message) SELECT %s, (%s::text[])[1 + i %% 3], i::text, 'transform',"
            " 'invalid FHIR: attribute birthDate: not a date'"
            " FROM generate_series(1, %s) i",
            (BIG, RESOURCES, errors),
        )
        conn.execute("ANALYZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--errors", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with scratch_database("river_bench_console") as url, tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        fill(url, args.batches, args.errors)
        print(
            f"store: {args.batches:,} batches, {args.errors:,} errors in one batch"
            f" ({time.monotonic() - started:.1f} s to fill)"
        )
        port = free_port()
        env = {
            **os.environ,
            "API_AUTH": "none",
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "METRICS_PORT_API": "0",
            "FHIR_STORE_URL": url,
            "SOURCE_DB_URL": postgres_url("mimic"),
            "MAPPINGS": str(ROOT / "examples" / "mappings"),
            "CONCEPT_MAPS": str(ROOT / "examples" / "concept_maps"),
            "LIVE_SOURCES": "",
            "API_WORKERS": "2",
        }
        with open(Path(tmp) / "api.log", "wb") as log:
            api = subprocess.Popen(
                [sys.executable, "-m", "api"], env=env, cwd=ROOT, stdout=log, stderr=log
            )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    requests.get(f"{base}/health/live", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.2)
            pages = [
                (
                    "batches",
                    "#/batches",
                    "#batches tbody tr",
                    "/batches?limit=20&offset=0&live=false",
                ),
                (
                    "batches, status failed",
                    "#/batches?status=failed",
                    "#batches tbody tr",
                    "/batches?limit=20&offset=0&live=false&status=failed",
                ),
                (
                    f"batch with {args.errors:,} errors",
                    f"#/batches/{BIG}",
                    "#error-table tbody tr",
                    f"/batches/{BIG}/errors?limit=20&offset=0",
                ),
                (
                    "errors filtered by resource and stage",
                    f"#/batches/{BIG}?resource={RESOURCES[1]}&stage=transform",
                    "#error-table tbody tr",
                    f"/batches/{BIG}/errors?limit=20&resource_id={RESOURCES[1]}&stage=transform",
                ),
                ("launch", "#/launch", ".picker label", "/resources"),
                ("sources", "#/sources", "#mappings tbody tr", "/health"),
            ]
            print(f"{'page':42} {'browser p50':>12} {'max':>8} {'API p50':>9} {'max':>8}")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"{base}/console/")
                page.locator("#role").wait_for()
                for name, fragment, selector, request in pages:
                    shown, answered = [], []
                    for _ in range(args.runs):
                        page.goto("about:blank")
                        at = time.perf_counter()
                        page.goto(f"{base}/console/{fragment}")
                        page.locator(selector).first.wait_for(timeout=30_000)
                        shown.append(1000 * (time.perf_counter() - at))
                        at = time.perf_counter()
                        requests.get(base + request, timeout=30)
                        answered.append(1000 * (time.perf_counter() - at))
                    print(
                        f"{name:42} {statistics.median(shown):9.0f} ms {max(shown):5.0f} ms"
                        f" {statistics.median(answered):6.0f} ms {max(answered):5.0f} ms"
                    )
                browser.close()
        finally:
            api.terminate()
            api.wait(30)


if __name__ == "__main__":
    main()
