"""The synthetic MIMIC generator (test/utils/synthetic.py), without a database.

The generator draws from the statistics shipped in test/utils/mimic_reference.json.gz;
the tests that compare with the MIMIC-III demo itself (its measured proportions,
the file against a fresh learning) read the demo shipped in test/data/mimic-iii-demo.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from test.utils import dbutil, learn_reference, synthetic
from test.utils.create_records_db import write_csv_folder

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "test" / "data" / "mimic-iii-demo"  # <table>.csv.gz
UTILS = ROOT / "test" / "utils"
N = 2000
SEED = 20


@pytest.fixture(scope="module")
def reference():
    """The default: the shipped statistics."""
    return synthetic.load_reference()


@pytest.fixture(scope="module")
def tables(reference):
    """Every per-patient table of a 2,000-patient run."""
    out = {t: [] for t in synthetic.PATIENT_TABLES}
    for block in synthetic.iter_blocks(N, SEED, reference=reference):
        for table, rows in block.items():
            out[table].extend(rows)
    return out


@pytest.fixture(scope="module")
def demo():
    """The demo's tables as lists of dicts (empty field: None)."""
    assert learn_reference.holds_demo(DEMO), f"the MIMIC-III demo is missing from {DEMO}"
    out = {}
    for table in learn_reference.DEMO_TABLES:
        with dbutil.open_csv(DEMO / f"{table}.csv.gz") as f:
            out[table] = [{k: v or None for k, v in r.items()} for r in csv.DictReader(f)]
    return out


def column(table: str, name: str) -> int:
    return synthetic.COLUMNS[table].index(name)


def demo_header(table: str) -> list[str]:
    with dbutil.open_csv(DEMO / f"{table}.csv.gz") as f:
        return next(csv.reader(f))


def share(values, wanted) -> float:
    values = list(values)
    return sum(1 for v in values if v == wanted) / len(values)


def distance(a: Counter, b: Counter) -> float:
    """Total variation distance of two frequency tables (0: the same, 1: disjoint)."""
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


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
    for table in synthetic.DICTIONARY_TABLES:
        assert counts[table] == len(reference.dictionary[table]) > 100


# --- proportions: measured on the demo itself ---------------------------------------


def test_proportions_are_the_demos(tables, demo):
    patients, admissions = len(tables["patients"]), len(tables["admissions"])
    assert patients == N
    demo_admissions = len(demo["admissions"])
    assert admissions / patients == pytest.approx(demo_admissions / len(demo["patients"]), rel=0.1)
    for table in ("diagnoses_icd", "procedures_icd", "prescriptions", "services", "icustays"):
        assert len(tables[table]) / admissions == pytest.approx(
            len(demo[table]) / demo_admissions, rel=0.1
        ), table


def test_value_distributions(tables, demo):
    genders = [r[column("patients", "gender")] for r in tables["patients"]]
    assert set(genders) == {"F", "M"}
    demo_genders = [p["gender"] for p in demo["patients"]]
    assert share(genders, "F") == pytest.approx(share(demo_genders, "F"), abs=0.05)
    admissions = tables["admissions"]
    for name, value, tolerance in (
        ("language", None, 0.06),
        ("language", "ENGL", 0.06),
        ("admission_type", "EMERGENCY", 0.04),
        ("marital_status", "MARRIED", 0.06),
        ("marital_status", None, 0.04),
        ("insurance", "Medicare", 0.06),
        ("religion", None, 0.04),
    ):
        synthetic_share = share((r[column("admissions", name)] for r in admissions), value)
        demo_share = share((a[name] for a in demo["admissions"]), value)
        assert synthetic_share == pytest.approx(demo_share, abs=tolerance), (name, value)
    language = Counter(r[column("admissions", "language")] for r in admissions)
    assert language["ENGL"] > language["SPAN"] > 0
    for name in ("admission_type", "admission_location", "ethnicity", "diagnosis"):
        synthetic_values = Counter(r[column("admissions", name)] for r in admissions)
        demo_values = Counter(a[name] for a in demo["admissions"])
        assert distance(synthetic_values, demo_values) < 0.15, name
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


def test_codes_are_drawn_with_the_demos_frequencies(tables, demo):
    for table in ("diagnoses_icd", "procedures_icd"):
        drawn = Counter(r[column(table, "icd9_code")] for r in tables[table])
        measured = Counter(r["icd9_code"] for r in demo[table])
        assert set(drawn) <= set(measured), table  # codes of the demo only
        assert distance(drawn, measured) < 0.15, table
        top = measured.most_common(1)[0][0]
        assert drawn[top] / drawn.total() == pytest.approx(
            measured[top] / measured.total(), rel=0.2
        ), table


def test_prescription_columns_follow_the_demos_frequencies(tables, demo):
    rows = tables["prescriptions"]
    for i, name in enumerate(synthetic.COLUMNS["prescriptions"][6:], 6):
        drawn = Counter(r[i] for r in rows)
        measured = Counter(rx[name] for rx in demo["prescriptions"])
        assert distance(drawn, measured) < 0.12, name
    # Drawn by drug: a drug's lines mostly keep its routes and units.
    furosemide = [r for r in rows if r[column("prescriptions", "drug")] == "Furosemide"]
    routes = Counter(r[column("prescriptions", "route")] for r in furosemide)
    assert furosemide and set(routes) <= {"IV", "PO", "PO/NG", "IV DRIP", "NG", "IVPCA"}
    units = Counter(r[column("prescriptions", "dose_unit_rx")] for r in furosemide)
    assert units.most_common(1)[0][0] == "mg"


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
        assert missing / len(codes) < 0.05, table
        assert any(c.startswith("0") for c in codes)  # text, leading zeros kept
    # The dictionaries have codes drawn, and only those.
    assert set(reference.dictionary_codes["d_icd_diagnoses"]) <= set(reference.diagnosis_codes)
    assert set(reference.dictionary_codes["d_icd_procedures"]) <= set(reference.procedure_codes)
    all_codes = tables["diagnoses_icd"] + tables["procedures_icd"]
    known = set().union(*map(set, reference.dictionary_codes.values()))
    missing = sum(1 for r in all_codes if r[4] not in known)
    assert 0.01 < missing / len(all_codes) < 0.04  # ~2%, as the demo


def test_missing_codes_are_those_the_demos_dictionary_lacks(reference, demo):
    for table, dictionary in (
        ("diagnoses_icd", "d_icd_diagnoses"),
        ("procedures_icd", "d_icd_procedures"),
    ):
        demo_known = {r["icd9_code"] for r in demo[dictionary]}
        used = {r["icd9_code"] for r in demo[table]}
        assert set(reference.dictionary_codes[dictionary]) == used & demo_known, table


def test_the_dictionaries_are_synthetic(reference, demo):
    for table, kind in (("d_icd_diagnoses", "diagnosis"), ("d_icd_procedures", "procedure")):
        rows = reference.dictionary[table]
        assert [len(r) for r in rows] == [4] * len(rows)
        demo_titles = {(r["icd9_code"], r["short_title"]) for r in demo[table]}
        demo_titles |= {(r["icd9_code"], r["long_title"]) for r in demo[table]}
        for row_id, code, short_title, long_title in rows:
            assert isinstance(row_id, int) and row_id >= synthetic.ROW_ID_BASE
            assert row_id == synthetic.dictionary_row_id(code)
            assert short_title == f"{kind.capitalize()} {code}" and len(short_title) <= 24
            assert long_title == f"Synthetic ICD-9 {kind} {code}"
            assert (code, short_title) not in demo_titles
            assert (code, long_title) not in demo_titles
        assert len({r[0] for r in rows}) == len(rows), table
    # The same code gets the same row_id, whatever the statistics.
    ids = {synthetic.dictionary_row_id(c) for c in ("0380", "03800", "038", "V1582", "E8788")}
    assert len(ids) == 5


# --- the shipped statistics ------------------------------------------------------------


def test_the_shipped_statistics_are_those_learned_from_the_demo():
    shipped = learn_reference.decode(learn_reference.REFERENCE_PATH.read_bytes())
    assert shipped == learn_reference.learn(DEMO), (
        "test/utils/mimic_reference.json.gz is stale: run test/utils/learn_reference.py"
    )
    # The same Reference as learning at run time.
    learned = synthetic.load_reference(DEMO)
    assert dataclasses.replace(learned, source="") == dataclasses.replace(
        synthetic.load_reference(), source=""
    )
    done = subprocess.run(
        [sys.executable, str(UTILS / "learn_reference.py"), str(DEMO), "--check"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_learning_writes_the_same_bytes_again(tmp_path, demo):
    out = tmp_path / "ref.json.gz"
    written = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(UTILS / "learn_reference.py"), str(DEMO), "--output", str(out)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        written.append(out.read_bytes())
    assert written[0] == written[1]
    assert learn_reference.decode(written[0]) == learn_reference.learn(DEMO)


def test_the_shipped_file_is_small_and_holds_no_demo_row(demo):
    raw = learn_reference.REFERENCE_PATH.read_bytes()
    assert len(raw) < 200_000
    text = learn_reference.decode(raw)
    blob = str(text)
    # No title of the dictionaries, no whole prescription line, no ids.
    for table in ("d_icd_diagnoses", "d_icd_procedures"):
        for row in demo[table][:: max(1, len(demo[table]) // 2000)]:
            assert row["long_title"] not in blob
    assert "subject_id" not in blob and "hadm_id" not in blob
    drug_columns = synthetic.COLUMNS["prescriptions"][6:]
    lines = {tuple(rx[c] for c in drug_columns) for rx in demo["prescriptions"]}

    def tuples(node):
        if isinstance(node, list):
            if len(node) == len(drug_columns) and not any(isinstance(c, list) for c in node):
                yield tuple(node)
            for child in node:
                yield from tuples(child)
        elif isinstance(node, dict):
            for child in node.values():
                yield from tuples(child)

    assert not lines & set(tuples(text))


def test_without_a_demo_the_shipped_statistics_are_used(monkeypatch, tmp_path):
    monkeypatch.setenv("MIMIC_DEMO_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(synthetic.dbutil, "DEFAULT_DEMO_DIR", tmp_path / "nowhere")
    ref = synthetic.load_reference()
    assert ref.source == str(learn_reference.REFERENCE_PATH)
    (tmp_path / "empty").mkdir()  # as Compose mounts a missing folder
    monkeypatch.setenv("MIMIC_DEMO_DIR", str(tmp_path / "empty"))
    assert synthetic.load_reference() is ref
    assert len(list(synthetic.iter_rows("prescriptions", 20, 1))) > 100


def repository_copy(tmp_path: Path) -> Path:
    """test/utils alone in a tree without test/data: no demo, only the statistics."""
    utils = tmp_path / "repo" / "test" / "utils"
    utils.mkdir(parents=True)
    for name in ("synthetic.py", "dbutil.py", "learn_reference.py", "create_records_db.py",
                 "mimic_schema.sql", "mimic_reference.json.gz"):  # fmt: skip
        shutil.copy(UTILS / name, utils / name)
    return utils


def test_the_generator_runs_from_the_repository_alone(tmp_path):
    utils = repository_copy(tmp_path)
    env = {**os.environ, "MIMIC_DEMO_DIR": str(tmp_path / "no-such-folder")}
    done = subprocess.run(
        [sys.executable, str(utils / "create_records_db.py"), "--patients", "120", "--seed",
         "4", "--output-dir", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    write_csv_folder(tmp_path / "here", 120, 4)
    for table in synthetic.TABLES:
        name = f"{table}.csv"
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()


def test_without_statistics_nor_demo_one_clear_sentence(tmp_path):
    utils = repository_copy(tmp_path)
    (utils / "mimic_reference.json.gz").unlink()
    env = {**os.environ, "MIMIC_DEMO_DIR": str(tmp_path / "no-such-folder")}
    command = [sys.executable, str(utils / "create_records_db.py"), "--patients", "5",
               "--output-dir", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("create_records_db: ") and done.stderr.count("\n") == 1
    assert "mimic_reference.json.gz is missing and no MIMIC-III demo" in done.stderr
    # A --demo-dir that holds no demo: one sentence too.
    (utils / "mimic_reference.json.gz").write_bytes(b"")
    done = subprocess.run(
        [*command, "--demo-dir", str(tmp_path / "no-such-folder")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("create_records_db: no MIMIC-III demo in ")
    assert "no-such-folder (patients.csv is missing)" in done.stderr
    # A broken file: one sentence.
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "cannot be read" in done.stderr and "Traceback" not in done.stderr


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


def test_output_dir_writes_the_demos_format(tmp_path, reference):
    counts = write_csv_folder(tmp_path, 150, 4)
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
    # The dictionaries are the synthetic rows, in the demo's format.
    for table in synthetic.DICTIONARY_TABLES:
        expected = synthetic.csv_text([synthetic.COLUMNS[table], *reference.dictionary[table]])
        assert (tmp_path / f"{table}.csv").read_bytes() == expected.encode(), table
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
