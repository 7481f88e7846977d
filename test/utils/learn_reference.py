"""Learn the synthetic generator's statistics from the MIMIC-III demo.

    python test/utils/learn_reference.py                 # test/data/mimic-iii-demo
    python test/utils/learn_reference.py DEMO_DIR        # or $MIMIC_DEMO_DIR
    python test/utils/learn_reference.py --check         # exit 1 if the file is stale

writes test/utils/mimic_reference.json.gz, which synthetic.py reads by default:
with it the generator needs no demo (a user's machine has only the repository).
Run it again only when what the generator learns changes (and bump VERSION when
the layout changes); the file is the same bytes for the same demo (sorted keys,
gzip without a timestamp), and a unit test compares it with a fresh learning.

The file holds statistics, never the demo's rows: frequency tables of single
columns, as [value, count] pairs, most frequent first (NULL is null):

- patients: gender; age in days at the first admission; admissions per patient.
- admissions: length of stay in minutes; each categorical column (NULLs
  included); the discharge location of those discharged alive.
- per_admission: how many diagnoses, procedures, prescriptions, services and ICU
  stays an admission has.
- codes: the ICD-9 codes of diagnoses_icd and procedures_icd with their counts
  (codes only: no titles), and which of them the demo's dictionary lacks.
- prescriptions: the drug name, and each other drug column (type, names,
  formulary code, GSN, NDC, strength, dose, form, route) by drug for the drugs
  of at least MIN_DRUG_LINES lines, pooled over the rarer drugs otherwise; the
  start day after admission and the duration in days; how many lines of
  admissions with an ICU stay name one.
- services: the current service; icustays: source, care unit, ward, length of
  stay, whether the unit changes; caregivers: (label, description) pairs.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

try:
    from . import dbutil
except ImportError:  # run as a script
    import dbutil

VERSION = 1
REFERENCE_PATH = Path(__file__).resolve().with_name("mimic_reference.json.gz")
# The demo tables learned from (their CSV files must be there).
DEMO_TABLES = (
    "patients", "admissions", "icustays", "services", "diagnoses_icd", "procedures_icd",
    "prescriptions", "caregivers", "d_icd_diagnoses", "d_icd_procedures",
)  # fmt: skip
ADMISSION_COLUMNS = (
    "admission_type", "admission_location", "insurance", "language", "religion",
    "marital_status", "ethnicity", "diagnosis", "has_chartevents_data",
)  # fmt: skip
DRUG_COLUMNS = (
    "drug_type", "drug", "drug_name_poe", "drug_name_generic", "formulary_drug_cd", "gsn",
    "ndc", "prod_strength", "dose_val_rx", "dose_unit_rx", "form_val_disp", "form_unit_disp",
    "route",
)  # fmt: skip
# A drug of fewer lines has its other columns drawn from the rarer drugs' pool.
MIN_DRUG_LINES = 5


def _read(folder: Path, table: str) -> list[dict[str, str | None]]:
    path = dbutil.csv_path(folder, table)
    if path is None:
        raise FileNotFoundError(
            f"no MIMIC-III demo in {folder} ({table}.csv is missing): give the demo's folder,"
            " or leave --demo-dir and $MIMIC_DEMO_DIR unset to use the shipped statistics"
        )
    with dbutil.open_csv(path) as f:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]


def holds_demo(folder: str | Path | None) -> bool:
    """Whether `folder` has every CSV file the learning reads (`.csv` or `.csv.gz`)."""
    return bool(folder) and all(dbutil.csv_path(folder, t) is not None for t in DEMO_TABLES)


def _ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S")


def _per_key(rows: Iterable[dict], key: str, keys: Sequence) -> list[int]:
    counts = dict.fromkeys(keys, 0)
    for row in rows:
        if row[key] in counts:
            counts[row[key]] += 1
    return [counts[k] for k in keys]


def frequencies(values: Iterable) -> list[list]:
    """[[value, count], ...], most frequent first, ties in the order of the values' JSON."""
    counts = Counter(tuple(v) if isinstance(v, list) else v for v in values)
    pairs = [[list(v) if isinstance(v, tuple) else v, n] for v, n in counts.items()]
    return sorted(pairs, key=lambda p: (-p[1], json.dumps(p[0])))


def learn(folder: str | Path | None = None) -> dict:
    """The statistics of the demo in `folder` (default: dbutil.demo_dir())."""
    folder = dbutil.demo_dir(folder)
    rows = {t: _read(folder, t) for t in DEMO_TABLES}
    patients, admissions = rows["patients"], rows["admissions"]
    hadm_ids = [a["hadm_id"] for a in admissions]
    admit = {a["hadm_id"]: _ts(a["admittime"]) for a in admissions}

    first_admit: dict[str, datetime] = {}
    for a in admissions:
        t = _ts(a["admittime"])
        if a["subject_id"] not in first_admit or t < first_admit[a["subject_id"]]:
            first_admit[a["subject_id"]] = t
    stats: dict = {"version": VERSION}
    stats["patients"] = {
        "gender": frequencies(p["gender"] for p in patients),
        "age_days": frequencies(
            (first_admit[p["subject_id"]] - _ts(p["dob"])).days
            for p in patients
            if p["subject_id"] in first_admit
        ),
        "admissions_per_patient": frequencies(
            _per_key(admissions, "subject_id", [p["subject_id"] for p in patients])
        ),
    }
    stats["admissions"] = {
        "los_minutes": frequencies(
            max(1, int((_ts(a["dischtime"]) - _ts(a["admittime"])).total_seconds() // 60))
            for a in admissions
        ),
        "columns": {c: frequencies(a[c] for a in admissions) for c in ADMISSION_COLUMNS},
        "discharge_alive": frequencies(
            a["discharge_location"] for a in admissions if a["hospital_expire_flag"] == "0"
        ),
    }
    stats["per_admission"] = {
        table: frequencies(_per_key(rows[table], "hadm_id", hadm_ids))
        for table in ("diagnoses_icd", "procedures_icd", "prescriptions", "services", "icustays")
    }
    stats["codes"] = {}
    for table, dictionary in (
        ("diagnoses_icd", "d_icd_diagnoses"),
        ("procedures_icd", "d_icd_procedures"),
    ):
        known = {r["icd9_code"] for r in rows[dictionary]}
        used = frequencies(r["icd9_code"] for r in rows[table])
        stats["codes"][table] = {
            "frequencies": used,
            "not_in_dictionary": sorted(code for code, _n in used if code not in known),
        }

    prescriptions = rows["prescriptions"]
    drug_lines = Counter(rx["drug"] for rx in prescriptions)
    common = {d for d, n in drug_lines.items() if n >= MIN_DRUG_LINES}
    other_columns = [c for c in DRUG_COLUMNS if c != "drug"]
    lines_of: dict[str, list[dict]] = {}
    for rx in prescriptions:
        lines_of.setdefault(rx["drug"], []).append(rx)
    by_drug = {
        drug: {c: frequencies(rx[c] for rx in lines_of[drug]) for c in other_columns}
        for drug in sorted(common)
    }
    rare = [rx for rx in prescriptions if rx["drug"] not in common]
    with_icu = {i["hadm_id"] for i in rows["icustays"]}
    in_icu_admissions = [rx for rx in prescriptions if rx["hadm_id"] in with_icu]
    stats["prescriptions"] = {
        "drug": frequencies(rx["drug"] for rx in prescriptions),
        "by_drug": by_drug,
        "other_drugs": {c: frequencies(rx[c] for rx in rare) for c in other_columns},
        "start_offset_days": frequencies(
            (_ts(rx["startdate"]) - admit[rx["hadm_id"]]).days for rx in prescriptions
        ),
        # null: no enddate (as 1 line in 10,398 of the demo).
        "duration_days": frequencies(
            (_ts(rx["enddate"]) - _ts(rx["startdate"])).days if rx["enddate"] else None
            for rx in prescriptions
        ),
        # Lines of admissions with an ICU stay: [naming one, all].
        "icustay_share": [sum(1 for rx in in_icu_admissions if rx["icustay_id"]),
                          len(in_icu_admissions)],
    }  # fmt: skip
    icustays = rows["icustays"]
    stats["services"] = {"curr_service": frequencies(s["curr_service"] for s in rows["services"])}
    stats["icustays"] = {
        "dbsource": frequencies(i["dbsource"] for i in icustays),
        "careunit": frequencies(i["first_careunit"] for i in icustays),
        "wardid": frequencies(int(i["first_wardid"]) for i in icustays),
        "los_minutes": frequencies(max(1, int(float(i["los"]) * 1440)) for i in icustays),
        "changes_unit": frequencies(i["first_careunit"] != i["last_careunit"] for i in icustays),
    }
    stats["caregivers"] = {
        "label_description": frequencies([c["label"], c["description"]] for c in rows["caregivers"])
    }
    return stats


def encode(stats: dict) -> bytes:
    """The file's bytes: compact JSON with sorted keys, gzip without a timestamp."""
    text = json.dumps(stats, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return gzip.compress(text.encode("ascii") + b"\n", compresslevel=9, mtime=0)


def decode(data: bytes) -> dict:
    return json.loads(gzip.decompress(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Learn the synthetic generator's statistics from the MIMIC-III demo.",
    )
    parser.add_argument(
        "demo_dir", nargs="?", type=Path, default=None,
        help=f"the demo's folder (default: $MIMIC_DEMO_DIR, else {dbutil.DEFAULT_DEMO_DIR})",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=REFERENCE_PATH, help="default: %(default)s")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file differs"
    )
    args = parser.parse_args(argv)
    try:
        stats = learn(args.demo_dir)
    except (OSError, ValueError) as exc:
        print(f"learn_reference: {exc}", file=sys.stderr)
        return 1
    data = encode(stats)
    if args.check:
        current = args.output.read_bytes() if args.output.is_file() else b""
        if not current or decode(current) != stats:
            print(f"learn_reference: {args.output} differs from the demo's statistics: run"
                  " test/utils/learn_reference.py to write it again", file=sys.stderr)  # fmt: skip
            return 1
        print(f"{args.output} is up to date ({len(current):,} bytes)")
        return 0
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
