"""The synthetic MIMIC generator (test/utils/synthetic.py), without a database."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from test.utils import synthetic
from test.utils.create_records_db import write_csv_folder

DEMO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mimic-iii-demo"
N = 2000
SEED = 20


@pytest.fixture(scope="module")
def reference():
    return synthetic.load_reference(DEMO)


@pytest.fixture(scope="module")
def tables(reference):
    """Every per-patient table of a 2,000-patient run."""
    out = {t: [] for t in synthetic.PATIENT_TABLES}
    for block in synthetic.iter_blocks(N, SEED, reference=reference):
        for table, rows in block.items():
            out[table].extend(rows)
    return out


def column(table: str, name: str) -> int:
    return synthetic.COLUMNS[table].index(name)


def demo_header(table: str) -> list[str]:
    with open(DEMO / f"{table}.csv", newline="") as f:
        return next(csv.reader(f))


# --- determinism ------------------------------------------------------------------


def test_the_same_seed_gives_the_same_rows(reference):
    first = list(synthetic.iter_blocks(1200, 3, reference=reference))
    again = list(synthetic.iter_blocks(1200, 3, reference=reference))
    assert first == again


def test_another_seed_gives_other_rows(reference):
    first = list(synthetic.iter_rows("admissions", 50, 3, reference=reference))
    other = list(synthetic.iter_rows("admissions", 50, 4, reference=reference))
    assert [r[0] for r in first[:5]] == [r[0] for r in other[:5]]  # ids are not random
    assert first != other


def test_a_smaller_run_is_the_start_of_a_larger_one(reference):
    small = list(synthetic.iter_rows("prescriptions", 1000, 3, reference=reference))
    large = list(synthetic.iter_rows("prescriptions", 1300, 3, reference=reference))
    assert large[: len(small)] == small
    assert len(large) > len(small)


def test_a_table_alone_is_the_same_as_in_the_whole_run(tables, reference):
    for table in synthetic.PATIENT_TABLES:
        alone = list(synthetic.iter_rows(table, N, SEED, reference=reference))
        assert alone == tables[table], table


def test_the_csv_fast_path_formats_the_same_rows(reference):
    rows = list(synthetic.iter_blocks(300, 9, reference=reference))
    text = list(synthetic.iter_csv_blocks(300, 9, reference=reference))
    for block, csv_block in zip(rows, text, strict=True):
        assert set(block) == set(csv_block)
        for table, table_rows in block.items():
            assert csv_block[table] == (len(table_rows), synthetic.csv_text(table_rows)), table


def test_count_rows_matches_the_rows(tables, reference):
    counts = synthetic.count_rows(N, SEED)
    for table in synthetic.PATIENT_TABLES:
        assert counts[table] == len(tables[table])
    assert counts["caregivers"] == len(list(synthetic.iter_rows("caregivers", N, SEED)))
    assert counts["d_icd_diagnoses"] == 14567
    assert counts["d_icd_procedures"] == 3882


# --- proportions (measured on the demo: see synthetic.py) -------------------------


def test_proportions_are_the_demos(tables):
    patients, admissions = len(tables["patients"]), len(tables["admissions"])
    assert patients == N
    assert admissions / patients == pytest.approx(1.29, abs=0.12)
    assert len(tables["diagnoses_icd"]) / admissions == pytest.approx(13.65, abs=0.8)
    assert len(tables["procedures_icd"]) / admissions == pytest.approx(3.92, abs=0.4)
    assert len(tables["prescriptions"]) / admissions == pytest.approx(80.6, abs=8)
    assert len(tables["services"]) / admissions == pytest.approx(1.26, abs=0.1)
    assert len(tables["icustays"]) / admissions == pytest.approx(1.05, abs=0.08)


def test_value_distributions(tables):
    genders = Counter(r[column("patients", "gender")] for r in tables["patients"])
    assert set(genders) == {"F", "M"}
    assert genders["F"] / N == pytest.approx(0.55, abs=0.05)
    admissions = tables["admissions"]
    language = Counter(r[column("admissions", "language")] for r in admissions)
    assert language[None] / len(admissions) == pytest.approx(48 / 129, abs=0.08)
    assert language["ENGL"] > language["SPAN"] > 0
    marital = Counter(r[column("admissions", "marital_status")] for r in admissions)
    assert marital["MARRIED"] > marital["SINGLE"] > 0 and marital[None] > 0
    types = Counter(r[column("admissions", "admission_type")] for r in admissions)
    assert types["EMERGENCY"] / len(admissions) == pytest.approx(119 / 129, abs=0.05)
    expired = [r for r in admissions if r[column("admissions", "hospital_expire_flag")] == 1]
    assert 0.2 < len(expired) / len(admissions) < 0.4
    for row in expired:
        assert row[column("admissions", "deathtime")] == row[column("admissions", "dischtime")]
        assert row[column("admissions", "discharge_location")] == "DEAD/EXPIRED"
    # Some patients live on (the demo's were all deceased; MIMIC's are not).
    flags = Counter(r[column("patients", "expire_flag")] for r in tables["patients"])
    assert flags[0] > 0 and flags[1] > 0
    for row in tables["patients"]:
        assert (row[column("patients", "dod")] is not None) == (row[-1] == 1)


def test_times_are_mimic_shaped_and_ordered(tables):
    dob = {r[1]: r[column("patients", "dob")] for r in tables["patients"]}
    for row in tables["admissions"]:
        admit, disch = (
            row[column("admissions", "admittime")],
            row[column("admissions", "dischtime")],
        )
        assert len(admit) == 19 and admit[4] == "-" and admit[10] == " "
        assert "2100" <= admit[:4] <= "2211"
        assert dob[row[1]] < admit < disch
    assert all(d.endswith(" 00:00:00") for d in dob.values())
    ages = [int(row[column("admissions", "admittime")][:4]) - int(dob[row[1]][:4])
            for row in tables["admissions"]]  # fmt: skip
    assert min(ages) >= 14 and max(ages) > 89  # MIMIC shifts the oldest to ~300 years


def test_codes_point_to_the_dictionaries_but_a_few(tables, reference):
    for table, dictionary in (
        ("diagnoses_icd", "d_icd_diagnoses"),
        ("procedures_icd", "d_icd_procedures"),
    ):
        known = set(reference.dictionary_codes[dictionary])
        codes = [r[column(table, "icd9_code")] for r in tables[table]]
        missing = sum(1 for c in codes if c not in known)
        assert 0 < missing / len(codes) < 0.05, table
        assert any(c.startswith("0") for c in codes)  # text, leading zeros kept


# --- ids and referential integrity ------------------------------------------------


def test_ids_are_unique_and_never_mimics(tables):
    for table, rows in tables.items():
        row_ids = [r[0] for r in rows]
        assert len(set(row_ids)) == len(row_ids), table
        assert min(row_ids) >= synthetic.ROW_ID_BASE > 4_200_000
    subjects = [r[1] for r in tables["patients"]]
    assert len(set(subjects)) == N and min(subjects) == synthetic.SUBJECT_ID_BASE > 99_999
    hadms = [r[2] for r in tables["admissions"]]
    assert len(set(hadms)) == len(hadms) and min(hadms) >= synthetic.HADM_ID_BASE
    icustays = [r[3] for r in tables["icustays"]]
    assert len(set(icustays)) == len(icustays)


def test_every_reference_exists(tables):
    subjects = {r[1] for r in tables["patients"]}
    hadm_subject = {r[2]: r[1] for r in tables["admissions"]}
    assert {r[1] for r in tables["admissions"]} == subjects  # and each has one
    icustay_hadm = {r[3]: r[2] for r in tables["icustays"]}
    for table in ("icustays", "services", "diagnoses_icd", "procedures_icd", "prescriptions"):
        for row in tables[table]:
            assert hadm_subject[row[2]] == row[1], (table, row)
    with_icustay = 0
    for row in tables["prescriptions"]:
        if row[3] is not None:
            with_icustay += 1
            assert icustay_hadm[row[3]] == row[2]
    assert 0.5 < with_icustay / len(tables["prescriptions"]) < 0.8


def test_seq_num_counts_from_one_in_each_admission(tables):
    by_hadm: dict[int, list[int]] = {}
    for row in tables["diagnoses_icd"]:
        by_hadm.setdefault(row[2], []).append(row[3])
    assert all(seq == list(range(1, len(seq) + 1)) for seq in by_hadm.values())


def test_services_chain_prev_and_curr(tables):
    by_hadm: dict[int, list[tuple]] = {}
    for row in tables["services"]:
        by_hadm.setdefault(row[2], []).append(row)
    for rows in by_hadm.values():
        assert rows[0][4] is None
        for before, after in zip(rows, rows[1:], strict=False):
            assert after[4] == before[5] and before[3] <= after[3]


def test_caregivers_are_a_pool():
    rows = list(synthetic.iter_rows("caregivers", 60_000, 1))
    assert len(rows) == 10_000 == synthetic.caregiver_pool_size(60_000)
    assert synthetic.caregiver_pool_size(10) == 100
    assert min(r[1] for r in rows) == synthetic.CGID_BASE > 21570  # the demo's largest cgid
    assert Counter(r[2] for r in rows).most_common(1)[0][0] in {"RO", "MD", "Res", "RN"}


def test_insert_mode_caps_admissions_and_starts_at_the_ids_given(reference):
    start = synthetic.IdStart(subject_id=5_000_000, hadm_id=6_000_000)
    start.row_id = dict.fromkeys(synthetic.PATIENT_TABLES, 7_000_000)
    (block,) = synthetic.iter_blocks(
        30, 1, tables=("patients", "admissions"), start=start, reference=reference,
        max_admissions=1,
    )  # fmt: skip
    assert [r[1] for r in block["patients"]] == list(range(5_000_000, 5_000_030))
    assert [r[1] for r in block["admissions"]] == list(range(5_000_000, 5_000_030))
    assert block["admissions"][0][:3] == (7_000_000, 5_000_000, 6_000_000)
    assert start.subject_id == 5_000_030


def test_iter_dicts_and_patients(reference):
    (patient,) = synthetic.iter_patients(1, 5, typed=True)
    assert list(patient) == list(synthetic.COLUMNS["patients"])
    assert patient["dob"].year > 1700 and patient["gender"] in {"F", "M"}
    (raw,) = synthetic.iter_patients(1, 5)
    assert raw["dob"] == patient["dob"].strftime("%Y-%m-%d %H:%M:%S")
    with pytest.raises(ValueError, match="unknown table"):
        next(synthetic.iter_rows("labevents", 1))


# --- CSV output --------------------------------------------------------------------


def test_the_columns_are_the_demo_headers():
    for table, columns in synthetic.COLUMNS.items():
        assert list(columns) == demo_header(table), table


def test_output_dir_writes_the_demos_format(tmp_path):
    counts = write_csv_folder(tmp_path, 150, 4, demo_dir=DEMO)
    assert sorted(p.stem for p in tmp_path.glob("*.csv")) == sorted(synthetic.TABLES)
    assert counts == synthetic.count_rows(150, 4)
    for table in synthetic.TABLES:
        raw = (tmp_path / f"{table}.csv").read_bytes()
        assert raw.count(b"\r\n") == counts[table] + 1, table  # CRLF, as the demo
        with open(tmp_path / f"{table}.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == demo_header(table), table
        assert len(rows) == counts[table] + 1
        assert all(len(r) == len(rows[0]) for r in rows)
    # The dictionaries are the demo's, byte for byte: same quoting, same line ends.
    for table in synthetic.DICTIONARY_TABLES:
        assert (tmp_path / f"{table}.csv").read_bytes() == (DEMO / f"{table}.csv").read_bytes()
    # NULL is an empty field, as in the demo.
    with open(tmp_path / "admissions.csv", newline="") as f:
        languages = [r["language"] for r in csv.DictReader(f)]
    assert "" in languages and "None" not in languages


def test_cli_refuses_bad_counts():
    script = Path(synthetic.__file__).with_name("create_records_db.py")
    for args in (["--patients", "0"], ["--insert-new", "0"], ["--patients", "20000000"]):
        done = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, args
        assert "must be" in done.stderr or "positive" in done.stderr
