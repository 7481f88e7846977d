"""Transformation speed: instances per second on one core, rows already in memory.

    .venv/bin/python benchmarks/transform.py [--instances 100000]

Records are built from the synthetic MIMIC generator (test/utils/synthetic.py)
in the shape extraction gives them, then transformed with the mimic-demo.json
mappings: Patient (feat_6: a join on admissions, scripts) and Condition
(diagnosis: a join on the ICD-9 dictionary, two logical references). FHIR
validation is measured apart, on the resources just made.

Reference: the original fhir-river (arkhn, its last release) transforms about
3,400 Patient and 4,900 Condition instances per second on one core of this
machine kind; the targets are ten times that (35,000 and 50,000).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from river.concept_maps import ConceptMaps  # noqa: E402
from river.mapping import load_mappings  # noqa: E402
from river.scripts import ScriptRegistry  # noqa: E402
from river.transform import ResourceTransformer, timestamp  # noqa: E402
from river.validation import Validator  # noqa: E402
from test.utils import synthetic  # noqa: E402
from test.utils.dbutil import MAPPINGS_DIR, unpacked  # noqa: E402

MAPPING = unpacked(MAPPINGS_DIR / "mimic-demo.json")  # shipped gzip'd in test/data/mappings
PATIENT = "cktlnp0ji006e0mmzat7dwb98"  # feat_6: joins admissions, map_gender, clean_date
CONDITION = "cktlnp0oa00at0mmzp0b1u7zx"  # diagnosis: joins d_icd_diagnoses, references
TARGETS = {PATIENT: 35_000, CONDITION: 50_000}
ORIGINAL = {PATIENT: 3_400, CONDITION: 4_900}


def iso(value):
    """Extraction gives timestamps as ISO 8601 text with a 'T'."""
    return value.replace(" ", "T") if isinstance(value, str) and len(value) == 19 else value


def patient_records(n: int, seed: int):
    """feat_6 records: a patient's row once per admission (LEFT JOIN admissions)."""
    columns = synthetic.COLUMNS
    p_index = {c: i for i, c in enumerate(columns["patients"])}
    a_index = {c: i for i, c in enumerate(columns["admissions"])}
    for block in synthetic.iter_blocks(n, seed, tables=("patients", "admissions")):
        admissions = defaultdict(list)
        for row in block["admissions"]:
            admissions[row[a_index["subject_id"]]].append(row)
        for patient in block["patients"]:
            rows = admissions.get(patient[p_index["subject_id"]]) or [None]
            k = len(rows)
            yield {
                "patients.subject_id": [patient[p_index["subject_id"]]] * k,
                "patients.gender": [patient[p_index["gender"]]] * k,
                "patients.dob": [iso(patient[p_index["dob"]])] * k,
                "patients.dod": [iso(patient[p_index["dod"]])] * k,
                "patients.row_id": [patient[p_index["row_id"]]] * k,
                "admissions.marital_status": [r and r[a_index["marital_status"]] for r in rows],
                "admissions.language": [r and r[a_index["language"]] for r in rows],
            }


def condition_records(n: int, seed: int):
    """diagnosis records: one diagnosis row with its dictionary titles (LEFT JOIN)."""
    reference = synthetic.load_reference()
    titles = {row[1]: (row[2], row[3]) for row in reference.dictionary["d_icd_diagnoses"]}
    d_index = {c: i for i, c in enumerate(synthetic.COLUMNS["diagnoses_icd"])}
    patients = max(100, n // 12)
    while True:
        for row in synthetic.iter_rows("diagnoses_icd", patients, seed, reference=reference):
            short, long = titles.get(row[d_index["icd9_code"]], (None, None))
            yield {
                "diagnoses_icd.row_id": [row[d_index["row_id"]]],
                "diagnoses_icd.subject_id": [row[d_index["subject_id"]]],
                "diagnoses_icd.icd9_code": [row[d_index["icd9_code"]]],
                "d_icd_diagnoses.short_title": [short],
                "diagnoses_icd.hadm_id": [row[d_index["hadm_id"]]],
                "d_icd_diagnoses.long_title": [long],
            }
        seed += 1


def measure(transformer: ResourceTransformer, records: list[dict]) -> float:
    """Instances per second. Results are dropped as they come, as a service
    drops them once produced: keeping 100,000 resources alive would measure
    the garbage collector walking them instead."""
    now = timestamp()
    transform = transformer.transform
    failed = 0
    started = time.perf_counter()
    for record in records:
        if transform(record, now).error is not None:
            failed += 1
    seconds = time.perf_counter() - started
    if failed:
        first = next(transform(r, now).error for r in records if transform(r, now).error)
        raise SystemExit(f"{failed} instances failed, first: {first}")
    return len(records) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    scripts = ScriptRegistry.default()
    mappings = load_mappings(MAPPING, scripts)
    validator = Validator()
    print(f"transformation, one core, {args.instances:,} synthetic instances per resource")
    columns = ("transform/s", "target", "x original", "validate/s")
    print(f"{'resource':34} {columns[0]:>12} {columns[1]:>8} {columns[2]:>11} {columns[3]:>11}")
    for resource_id, make in ((PATIENT, patient_records), (CONDITION, condition_records)):
        plan = mappings.resource(resource_id)
        records = list(islice(make(args.instances, args.seed), args.instances))
        # The records stay in memory for the whole run (a service streams them):
        # keep the collector from walking them again and again.
        gc.freeze()
        transformer = ResourceTransformer(plan, scripts, ConceptMaps())
        measure(transformer, records[:2000])  # warm-up
        rate = measure(transformer, records)
        now = timestamp()
        resources = [transformer.transform(record, now).resource for record in records]
        del records
        validator.warm([plan.resource_type])
        started = time.perf_counter()
        invalid = sum(1 for resource in resources if validator.validate(resource))
        validate_rate = len(resources) / (time.perf_counter() - started)
        label = f"{plan.resource_type} ({plan.label[:20] or resource_id})"
        print(
            f"{label:34} {rate:12,.0f} {TARGETS[resource_id]:8,} "
            f"{rate / ORIGINAL[resource_id]:10.1f}x {validate_rate:11,.0f}"
            + (f"  ({invalid} invalid)" if invalid else "")
        )


if __name__ == "__main__":
    main()
