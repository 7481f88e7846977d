"""MIMIC-III-shaped synthetic records: deterministic from a seed, streamed.

The generator learns its distributions from the MIMIC-III demo (../shared/data/
mimic-iii-demo, or $MIMIC_DEMO_DIR): how many admissions a patient has, how many
diagnoses, procedures, prescriptions, services and ICU stays an admission has,
ages, lengths of stay, the categorical values of admissions (NULLs included), the
diagnosis and procedure codes (a few of which, as in MIMIC, are missing from the
dictionaries), whole prescription lines, caregiver roles. Nothing is copied but
the two ICD-9 dictionaries, which the codes point to.

    from test.utils import synthetic
    for row in synthetic.iter_rows("admissions", n_patients=1000, seed=7): ...
    for patient in synthetic.iter_patients(100, seed=7): ...   # dicts
    for block in synthetic.iter_blocks(10_000, seed=7): ...    # {table: [tuples]}

Rows are tuples in the column order of COLUMNS[table] (the demo CSV headers):
integers as int, text as str, NULL as None, timestamps as 'YYYY-MM-DD HH:MM:SS'
strings (iter_dicts(..., typed=True) gives datetime objects instead).

Patients are made in blocks of BLOCK_PATIENTS, each with its own random streams
(seed, block, first id), so memory stays flat whatever the count, the first n
patients of a larger run are the same as those of a run of n, and a table can be
generated alone (the counts of child rows come from the block's skeleton stream).

Ids never collide with MIMIC's: subject_id from SUBJECT_ID_BASE (1,000,000),
hadm_id from HADM_ID_BASE, icustay_id from ICUSTAY_ID_BASE, cgid from CGID_BASE,
and every table's row_id from ROW_ID_BASE (100,000,000; MIMIC's largest is 4.2M).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

try:
    from . import dbutil
except ImportError:  # run as a script
    import dbutil

COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": (
        "row_id", "subject_id", "gender", "dob", "dod", "dod_hosp", "dod_ssn", "expire_flag",
    ),
    "admissions": (
        "row_id", "subject_id", "hadm_id", "admittime", "dischtime", "deathtime",
        "admission_type", "admission_location", "discharge_location", "insurance",
        "language", "religion", "marital_status", "ethnicity", "edregtime", "edouttime",
        "diagnosis", "hospital_expire_flag", "has_chartevents_data",
    ),
    "icustays": (
        "row_id", "subject_id", "hadm_id", "icustay_id", "dbsource", "first_careunit",
        "last_careunit", "first_wardid", "last_wardid", "intime", "outtime", "los",
    ),
    "services": (
        "row_id", "subject_id", "hadm_id", "transfertime", "prev_service", "curr_service",
    ),
    "diagnoses_icd": ("row_id", "subject_id", "hadm_id", "seq_num", "icd9_code"),
    "procedures_icd": ("row_id", "subject_id", "hadm_id", "seq_num", "icd9_code"),
    "prescriptions": (
        "row_id", "subject_id", "hadm_id", "icustay_id", "startdate", "enddate", "drug_type",
        "drug", "drug_name_poe", "drug_name_generic", "formulary_drug_cd", "gsn", "ndc",
        "prod_strength", "dose_val_rx", "dose_unit_rx", "form_val_disp", "form_unit_disp",
        "route",
    ),
    "caregivers": ("row_id", "cgid", "label", "description"),
    "d_icd_diagnoses": ("row_id", "icd9_code", "short_title", "long_title"),
    "d_icd_procedures": ("row_id", "icd9_code", "short_title", "long_title"),
}  # fmt: skip
# Tables made per patient, in the order they are written (parents first).
PATIENT_TABLES = (
    "patients", "admissions", "icustays", "services",
    "diagnoses_icd", "procedures_icd", "prescriptions",
)  # fmt: skip
POOL_TABLES = ("caregivers",)
DICTIONARY_TABLES = ("d_icd_diagnoses", "d_icd_procedures")
TABLES = PATIENT_TABLES + POOL_TABLES + DICTIONARY_TABLES
TIMESTAMP_COLUMNS = {
    table: frozenset(
        c
        for c in cols
        if c.endswith(("time", "date")) or c in ("dob", "dod", "dod_hosp", "dod_ssn")
    )
    for table, cols in COLUMNS.items()
}

SUBJECT_ID_BASE = 1_000_000
HADM_ID_BASE = 10_000_000
ICUSTAY_ID_BASE = 20_000_000
CGID_BASE = 1_000_000
ROW_ID_BASE = 100_000_000
BLOCK_PATIENTS = 1000

# What the demo cannot tell (its 100 patients were all chosen deceased, full
# MIMIC-III has about a third): death in hospital at the last admission (the
# demo's 40%), else later, known from the SSN death index.
P_DEATH_IN_HOSPITAL = 0.40
P_DEATH_LATER = 0.35
P_DOD_SSN_IN_HOSPITAL = 0.60
# Demographics of a later admission are those of the patient's first, but
# this often (as MIMIC has NULL language on one stay and ENGL on the next).
P_DEMOGRAPHICS_CHANGE = 0.15
# Diagnosis/procedure codes: drawn from the demo's codes (their frequencies,
# those missing from the dictionary included), else any code of the dictionary.
P_CODE_FROM_DEMO = 0.85
FIRST_DAY = date(2100, 1, 1).toordinal()
SPAN_DAYS = 100 * 365
DAY = 86400


# --------------------------------------------------------------------------- #
# What the demo teaches
# --------------------------------------------------------------------------- #
@dataclass
class Reference:
    """Empirical distributions measured on the demo: lists to draw from."""

    genders: list[str] = field(default_factory=list)
    age_days: list[int] = field(default_factory=list)
    admissions_per_patient: list[int] = field(default_factory=list)
    los_minutes: list[int] = field(default_factory=list)
    admission: dict[str, list[str | None]] = field(default_factory=dict)
    discharge_alive: list[str] = field(default_factory=list)
    per_admission: dict[str, list[int]] = field(default_factory=dict)
    diagnosis_codes: list[str] = field(default_factory=list)
    procedure_codes: list[str] = field(default_factory=list)
    dictionary: dict[str, list[tuple]] = field(default_factory=dict)
    dictionary_codes: dict[str, list[str]] = field(default_factory=dict)
    rx_templates: list[tuple] = field(default_factory=list)
    rx_start_offsets: list[int] = field(default_factory=list)
    rx_durations: list[int | None] = field(default_factory=list)
    rx_template_csv: list[str] = field(default_factory=list)
    rx_icustay_share: float = 0.0
    services: list[str] = field(default_factory=list)
    icu: dict[str, list] = field(default_factory=dict)
    caregivers: list[tuple[str | None, str | None]] = field(default_factory=list)


def _read(folder: Path, table: str) -> list[dict[str, str | None]]:
    path = folder / f"{table}.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the generator learns from the MIMIC-III demo;"
            " point --demo-dir or $MIMIC_DEMO_DIR at it"
        )
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]


def _ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S")


def _per_key(rows: Iterable[dict], key: str, keys: Sequence) -> list[int]:
    counts = dict.fromkeys(keys, 0)
    for row in rows:
        if row[key] in counts:
            counts[row[key]] += 1
    return [counts[k] for k in keys]


@lru_cache(maxsize=4)
def load_reference(folder: str | Path | None = None) -> Reference:
    """Measure the demo found in `folder` (default: dbutil.demo_dir())."""
    folder = dbutil.demo_dir(folder)
    ref = Reference()
    patients = _read(folder, "patients")
    admissions = _read(folder, "admissions")
    hadm_ids = [a["hadm_id"] for a in admissions]
    admit = {a["hadm_id"]: _ts(a["admittime"]) for a in admissions}

    ref.genders = [p["gender"] for p in patients]
    first_admit: dict[str, datetime] = {}
    for a in admissions:
        t = _ts(a["admittime"])
        if a["subject_id"] not in first_admit or t < first_admit[a["subject_id"]]:
            first_admit[a["subject_id"]] = t
    ref.age_days = [
        (first_admit[p["subject_id"]] - _ts(p["dob"])).days
        for p in patients
        if p["subject_id"] in first_admit
    ]
    ref.admissions_per_patient = _per_key(
        admissions, "subject_id", [p["subject_id"] for p in patients]
    )
    ref.los_minutes = [
        max(1, int((_ts(a["dischtime"]) - _ts(a["admittime"])).total_seconds() // 60))
        for a in admissions
    ]
    for column in (
        "admission_type", "admission_location", "insurance", "language", "religion",
        "marital_status", "ethnicity", "diagnosis", "has_chartevents_data",
    ):  # fmt: skip
        ref.admission[column] = [a[column] for a in admissions]
    ref.discharge_alive = [
        a["discharge_location"] for a in admissions if a["hospital_expire_flag"] == "0"
    ]

    diagnoses = _read(folder, "diagnoses_icd")
    procedures = _read(folder, "procedures_icd")
    prescriptions = _read(folder, "prescriptions")
    services = _read(folder, "services")
    icustays = _read(folder, "icustays")
    ref.per_admission = {
        "diagnoses_icd": _per_key(diagnoses, "hadm_id", hadm_ids),
        "procedures_icd": _per_key(procedures, "hadm_id", hadm_ids),
        "prescriptions": _per_key(prescriptions, "hadm_id", hadm_ids),
        "services": _per_key(services, "hadm_id", hadm_ids),
        "icustays": _per_key(icustays, "hadm_id", hadm_ids),
    }
    ref.diagnosis_codes = [d["icd9_code"] for d in diagnoses]
    ref.procedure_codes = [p["icd9_code"] for p in procedures]
    for table in DICTIONARY_TABLES:
        rows = [
            (int(r["row_id"]), r["icd9_code"], r["short_title"], r["long_title"])
            for r in _read(folder, table)
        ]
        ref.dictionary[table] = rows
        ref.dictionary_codes[table] = [r[1] for r in rows]

    drug_columns = COLUMNS["prescriptions"][6:]
    ref.rx_templates = [tuple(rx[c] for c in drug_columns) for rx in prescriptions]
    ref.rx_start_offsets = [
        (_ts(rx["startdate"]) - admit[rx["hadm_id"]]).days for rx in prescriptions
    ]
    # None: no enddate (as 1 line in 10,398 of the demo).
    ref.rx_durations = [
        (_ts(rx["enddate"]) - _ts(rx["startdate"])).days if rx["enddate"] else None
        for rx in prescriptions
    ]
    ref.rx_template_csv = [csv_text([t]).removesuffix("\r\n") for t in ref.rx_templates]
    with_icu = {i["hadm_id"] for i in icustays}
    in_icu_admissions = [rx for rx in prescriptions if rx["hadm_id"] in with_icu]
    ref.rx_icustay_share = sum(1 for rx in in_icu_admissions if rx["icustay_id"]) / max(
        1, len(in_icu_admissions)
    )
    ref.services = [s["curr_service"] for s in services]
    ref.icu = {
        "dbsource": [i["dbsource"] for i in icustays],
        "careunit": [i["first_careunit"] for i in icustays],
        "wardid": [int(i["first_wardid"]) for i in icustays],
        "los_minutes": [max(1, int(float(i["los"]) * 1440)) for i in icustays],
        "changes_unit": [i["first_careunit"] != i["last_careunit"] for i in icustays],
    }
    ref.caregivers = [(c["label"], c["description"]) for c in _read(folder, "caregivers")]
    return ref


# --------------------------------------------------------------------------- #
# Formatting times: seconds on the proleptic ordinal day scale
# --------------------------------------------------------------------------- #
_DAY_TEXT: dict[int, str] = {}


def _day_text(day: int) -> str:
    text = _DAY_TEXT.get(day)
    if text is None:
        text = _DAY_TEXT[day] = date.fromordinal(day).isoformat()
    return text


def _ts_text(seconds: int) -> str:
    day, rest = divmod(seconds, DAY)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{_day_text(day)} {hours:02d}:{minutes:02d}:{secs:02d}"


class _Midnights(dict):
    """day -> 'YYYY-MM-DD 00:00:00', as a MIMIC date column holds it (cached)."""

    def __missing__(self, day: int) -> str:
        text = self[day] = f"{_day_text(day)} 00:00:00"
        return text


_MIDNIGHT = _Midnights()


def _date_text(day: int) -> str:
    return _MIDNIGHT[day]


# --------------------------------------------------------------------------- #
# Ids
# --------------------------------------------------------------------------- #
@dataclass
class IdStart:
    """The next ids to give. The defaults never meet MIMIC's ids."""

    subject_id: int = SUBJECT_ID_BASE
    hadm_id: int = HADM_ID_BASE
    icustay_id: int = ICUSTAY_ID_BASE
    row_id: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(PATIENT_TABLES, ROW_ID_BASE)
    )


# --------------------------------------------------------------------------- #
# Blocks of patients
# --------------------------------------------------------------------------- #
@dataclass
class _Admission:
    hadm_id: int
    admit: int  # seconds
    disch: int
    icustays: list[tuple[int, int, int]]  # (icustay_id, intime, outtime)
    counts: dict[str, int]


def _skeleton(ref: Reference, rng: random.Random, n: int, ids: IdStart, max_admissions: int):
    """Patients, admissions, ICU stays and services, and the counts of the other
    tables' rows: always drawn whole, so that any table can be generated alone."""
    patients: list[tuple] = []
    admissions: list[tuple] = []
    icustays: list[tuple] = []
    services: list[tuple] = []
    skeleton: list[tuple[int, list[_Admission]]] = []
    rows = ids.row_id
    adm_values = ref.admission
    choice, rand, randrange = rng.choice, rng.random, rng.randrange
    for _ in range(n):
        subject_id = ids.subject_id
        ids.subject_id += 1
        profile = {
            c: choice(adm_values[c])
            for c in ("insurance", "language", "religion", "marital_status", "ethnicity")
        }
        n_adm = min(max(1, choice(ref.admissions_per_patient)), max_admissions)
        admit = (FIRST_DAY + randrange(SPAN_DAYS)) * DAY + randrange(1440) * 60
        dob_day = admit // DAY - choice(ref.age_days) + randrange(-180, 181)
        stays: list[_Admission] = []
        died_in_hospital = False
        for k in range(n_adm):
            last = k == n_adm - 1
            disch = admit + choice(ref.los_minutes) * 60
            counts = {t: choice(c) for t, c in ref.per_admission.items()}
            hadm_id = ids.hadm_id
            ids.hadm_id += 1
            expire = last and rand() < P_DEATH_IN_HOSPITAL
            died_in_hospital = died_in_hospital or expire
            if k and rand() < P_DEMOGRAPHICS_CHANGE:
                profile = dict(profile, language=choice(adm_values["language"]))
            if k and rand() < P_DEMOGRAPHICS_CHANGE:
                profile = dict(profile, marital_status=choice(adm_values["marital_status"]))
            admission_type = choice(adm_values["admission_type"])
            ed = admission_type == "EMERGENCY" and rand() < 0.77
            admissions.append((
                rows["admissions"], subject_id, hadm_id, _ts_text(admit), _ts_text(disch),
                _ts_text(disch) if expire else None,
                admission_type, choice(adm_values["admission_location"]),
                "DEAD/EXPIRED" if expire else choice(ref.discharge_alive),
                profile["insurance"], profile["language"], profile["religion"],
                profile["marital_status"], profile["ethnicity"],
                _ts_text(admit - randrange(30, 600) * 60) if ed else None,
                _ts_text(admit + randrange(0, 180) * 60) if ed else None,
                choice(adm_values["diagnosis"]), int(expire),
                int(choice(adm_values["has_chartevents_data"])),
            ))  # fmt: skip
            rows["admissions"] += 1
            # ICU stays, one after the other inside the admission.
            icu: list[tuple[int, int, int]] = []
            start = admit
            for _i in range(counts.pop("icustays")):
                intime = min(disch, start + randrange(0, 6 * 3600))
                outtime = min(disch, intime + choice(ref.icu["los_minutes"]) * 60)
                icu.append((ids.icustay_id, intime, outtime))
                ids.icustay_id += 1
                start = outtime
            for icustay_id, intime, outtime in icu:
                first_unit = choice(ref.icu["careunit"])
                ward = choice(ref.icu["wardid"])
                moved = choice(ref.icu["changes_unit"])
                icustays.append((
                    rows["icustays"], subject_id, hadm_id, icustay_id,
                    choice(ref.icu["dbsource"]), first_unit,
                    choice(ref.icu["careunit"]) if moved else first_unit,
                    ward, choice(ref.icu["wardid"]) if moved else ward,
                    _ts_text(intime), _ts_text(outtime), round((outtime - intime) / DAY, 4),
                ))  # fmt: skip
                rows["icustays"] += 1
            # Services: the first within two hours of admission, the next ones later.
            n_services = counts.pop("services")
            times = [min(disch, admit + randrange(0, 7200))] if n_services else []
            times += sorted(randrange(times[0], disch + 1) for _ in range(n_services - 1))
            previous = None
            for t in times:
                current = choice(ref.services)
                services.append(
                    (rows["services"], subject_id, hadm_id, _ts_text(t), previous, current)
                )
                rows["services"] += 1
                previous = current
            stays.append(_Admission(hadm_id, admit, disch, icu, counts))
            admit = disch + int(rng.expovariate(1 / (300 * DAY))) // 60 * 60 + 12 * 3600
        # Death.
        last_disch_day = stays[-1].disch // DAY
        if died_in_hospital:
            dod = _date_text(last_disch_day)
            dod_hosp = dod
            dod_ssn = dod if rand() < P_DOD_SSN_IN_HOSPITAL else None
        elif rand() < P_DEATH_LATER:
            dod = dod_ssn = _date_text(last_disch_day + 1 + int(rng.expovariate(1 / 500)))
            dod_hosp = None
        else:
            dod = dod_hosp = dod_ssn = None
        patients.append((
            rows["patients"], subject_id, choice(ref.genders), _date_text(dob_day),
            dod, dod_hosp, dod_ssn, int(dod is not None),
        ))  # fmt: skip
        rows["patients"] += 1
        skeleton.append((subject_id, stays))
    return skeleton, {
        "patients": patients,
        "admissions": admissions,
        "icustays": icustays,
        "services": services,
    }


def _codes(rng: random.Random, demo_codes: list[str], all_codes: list[str], k: int) -> list[str]:
    rand = rng.random
    n_demo, n_all, p = len(demo_codes), len(all_codes), P_CODE_FROM_DEMO
    codes = []
    for _ in range(k):
        r = rand()
        if r < p:
            codes.append(demo_codes[int(r / p * n_demo)])
        else:
            codes.append(all_codes[int((r - p) / (1 - p) * n_all)])
    return codes


def _icd_rows(rng, skeleton, table, demo_codes, all_codes, ids: IdStart, generate: bool):
    out: list[tuple] = []
    row_id = ids.row_id[table]
    for subject_id, stays in skeleton:
        for stay in stays:
            k = stay.counts[table]
            if generate:
                for seq, code in enumerate(_codes(rng, demo_codes, all_codes, k), 1):
                    out.append((row_id, subject_id, stay.hadm_id, seq, code))
                    row_id += 1
            else:
                row_id += k
    ids.row_id[table] = row_id
    return out


def _prescriptions(ref: Reference, rng: random.Random, skeleton, ids: IdStart, generate: bool):
    """Compact rows: (row_id, subject_id, hadm_id, icustay_id, startdate, enddate,
    index of the drug template); _expand_prescriptions makes them whole."""
    out: list[tuple] = []
    append = out.append
    row_id = ids.row_id["prescriptions"]
    rand, choices = rng.random, rng.choices
    share = ref.rx_icustay_share
    templates = range(len(ref.rx_templates))
    offsets, durations = ref.rx_start_offsets, ref.rx_durations
    midnight = _MIDNIGHT
    for subject_id, stays in skeleton:
        for stay in stays:
            k = stay.counts["prescriptions"]
            if not generate:
                row_id += k
                continue
            hadm_id = stay.hadm_id
            admit_day = stay.admit // DAY
            los_days = stay.disch // DAY - admit_day
            icu_ids = [s[0] for s in stay.icustays]
            n_icu = len(icu_ids)
            for template, offset, duration in zip(
                choices(templates, k=k), choices(offsets, k=k), choices(durations, k=k), strict=True
            ):
                day = admit_day + (-1 if offset < -1 else los_days if offset > los_days else offset)
                r = rand()
                append((
                    row_id, subject_id, hadm_id,
                    icu_ids[int(r / share * n_icu)] if n_icu and r < share else None,
                    midnight[day],
                    None if duration is None else midnight[day + duration],
                    template,
                ))  # fmt: skip
                row_id += 1
    ids.row_id["prescriptions"] = row_id
    return out


def _expand_prescriptions(rows: list[tuple], ref: Reference) -> list[tuple]:
    templates = ref.rx_templates
    return [(*row[:6], *templates[row[6]]) for row in rows]


def _prescriptions_csv(rows: list[tuple], ref: Reference) -> str:
    """CSV lines of compact prescriptions: the drug part is formatted once per template."""
    fragments = ref.rx_template_csv
    return "".join([
        f"{r[0]},{r[1]},{r[2]},{'' if r[3] is None else r[3]},{r[4]},"
        f"{'' if r[5] is None else r[5]},{fragments[r[6]]}\r\n"
        for r in rows
    ])  # fmt: skip


def csv_text(rows: Iterable[tuple]) -> str:
    """Rows as the demo's CSV lines (CRLF; None as an empty field, read as NULL)."""
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def _block_seed(seed: int, block: int, first_subject_id: int, stream: str) -> str:
    return f"fhir-river-synthetic/{seed}/{block}/{first_subject_id}/{stream}"


def _iter_raw_blocks(
    n_patients: int,
    seed: int,
    tables: Iterable[str] | None,
    start: IdStart | None,
    reference: Reference | None,
    max_admissions: int,
) -> Iterator[tuple[Reference, dict[str, list[tuple]]]]:
    wanted = frozenset(PATIENT_TABLES if tables is None else tables)
    unknown = wanted - set(PATIENT_TABLES)
    if unknown:
        raise ValueError(f"not a per-patient table: {', '.join(sorted(unknown))}")
    ref = reference or load_reference()
    ids = start if start is not None else IdStart()
    block = 0
    remaining = n_patients
    while remaining > 0:
        n = min(BLOCK_PATIENTS, remaining)
        first = ids.subject_id

        def stream(name: str, block=block, first=first) -> random.Random:
            return random.Random(_block_seed(seed, block, first, name))

        skeleton, rows = _skeleton(ref, stream("skeleton"), n, ids, max_admissions)
        out = {t: rows[t] for t in PATIENT_TABLES[:4] if t in wanted}
        for table, dictionary, demo_codes in (
            ("diagnoses_icd", "d_icd_diagnoses", ref.diagnosis_codes),
            ("procedures_icd", "d_icd_procedures", ref.procedure_codes),
        ):
            generated = _icd_rows(
                stream(table), skeleton, table, demo_codes, ref.dictionary_codes[dictionary],
                ids, table in wanted,
            )  # fmt: skip
            if table in wanted:
                out[table] = generated
        rx = _prescriptions(ref, stream("prescriptions"), skeleton, ids, "prescriptions" in wanted)
        if "prescriptions" in wanted:
            out["prescriptions"] = rx
        yield ref, out
        remaining -= n
        block += 1


def iter_blocks(
    n_patients: int,
    seed: int = 0,
    *,
    tables: Iterable[str] | None = None,
    start: IdStart | None = None,
    reference: Reference | None = None,
    max_admissions: int = 1_000_000,
) -> Iterator[dict[str, list[tuple]]]:
    """Blocks of at most BLOCK_PATIENTS patients: {table: rows} for the per-patient
    tables asked (default all of PATIENT_TABLES). `start` gives the first ids (and is
    advanced); the values depend on the seed, the block and its first subject_id.
    `max_admissions` caps the admissions of a patient (1 for --insert-new)."""
    for ref, block in _iter_raw_blocks(n_patients, seed, tables, start, reference, max_admissions):
        if "prescriptions" in block:
            block["prescriptions"] = _expand_prescriptions(block["prescriptions"], ref)
        yield block


def iter_csv_blocks(
    n_patients: int,
    seed: int = 0,
    *,
    tables: Iterable[str] | None = None,
    start: IdStart | None = None,
    reference: Reference | None = None,
) -> Iterator[dict[str, tuple[int, str]]]:
    """The blocks of iter_blocks as CSV text: {table: (rows, lines)}, the fast path
    of the writers (the same rows, formatted as csv_text formats them)."""
    for ref, block in _iter_raw_blocks(n_patients, seed, tables, start, reference, 1_000_000):
        yield {
            table: (
                len(rows),
                _prescriptions_csv(rows, ref) if table == "prescriptions" else csv_text(rows),
            )
            for table, rows in block.items()
        }


def caregiver_pool_size(n_patients: int) -> int:
    """Caregivers are the hospital's staff, not per patient: full MIMIC-III lists
    7,567 for 46,520 patients, about one per six; at least 100."""
    return max(100, n_patients // 6)


def iter_caregivers(n_patients: int, seed: int = 0, reference: Reference | None = None):
    ref = reference or load_reference()
    rng = random.Random(f"fhir-river-synthetic/{seed}/caregivers")
    for i in range(caregiver_pool_size(n_patients)):
        label, description = rng.choice(ref.caregivers)
        yield (ROW_ID_BASE + i, CGID_BASE + i, label, description)


def iter_rows(
    table: str,
    n_patients: int,
    seed: int = 0,
    *,
    start: IdStart | None = None,
    reference: Reference | None = None,
) -> Iterator[tuple]:
    """The rows of one table for a run of `n_patients` patients, as tuples."""
    if table in PATIENT_TABLES:
        for block in iter_blocks(
            n_patients, seed, tables=(table,), start=start, reference=reference
        ):
            yield from block[table]
    elif table == "caregivers":
        yield from iter_caregivers(n_patients, seed, reference)
    elif table in DICTIONARY_TABLES:
        yield from (reference or load_reference()).dictionary[table]
    else:
        raise ValueError(f"unknown table {table!r}: one of {', '.join(TABLES)}")


def iter_dicts(
    table: str, n_patients: int, seed: int = 0, *, typed: bool = False, **kwargs
) -> Iterator[dict]:
    """The rows of one table as dicts; `typed` turns timestamps into datetimes."""
    columns = COLUMNS[table]
    times = [i for i, c in enumerate(columns) if c in TIMESTAMP_COLUMNS[table]] if typed else []
    for row in iter_rows(table, n_patients, seed, **kwargs):
        if times:
            row = list(row)
            for i in times:
                if row[i] is not None:
                    row[i] = datetime.fromisoformat(row[i])
        yield dict(zip(columns, row, strict=True))


def iter_patients(n: int, seed: int = 0, **kwargs) -> Iterator[dict]:
    """`n` synthetic patients as dicts (columns of the patients table)."""
    return iter_dicts("patients", n, seed, **kwargs)


def count_rows(n_patients: int, seed: int = 0) -> dict[str, int]:
    """How many rows a run of `n_patients` writes to each table."""
    ref = load_reference()
    ids = IdStart()
    for _block in iter_blocks(n_patients, seed, tables=("patients",), start=ids, reference=ref):
        pass
    counts = {t: ids.row_id[t] - ROW_ID_BASE for t in PATIENT_TABLES}
    counts["caregivers"] = caregiver_pool_size(n_patients)
    for table in DICTIONARY_TABLES:
        counts[table] = len(ref.dictionary[table])
    return counts
