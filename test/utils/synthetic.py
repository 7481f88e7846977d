"""MIMIC-III-shaped synthetic records: deterministic from a seed, streamed.

The generator draws from distributions learned on the MIMIC-III demo: how many
admissions a patient has, how many diagnoses, procedures, prescriptions, services
and ICU stays an admission has, ages, lengths of stay, the categorical values of
admissions (NULLs included), the diagnosis and procedure codes (a few of which,
as in MIMIC, are missing from the dictionaries), the prescriptions' drug columns,
caregiver roles. By default they come from the statistics shipped beside this
file (mimic_reference.json.gz, written by learn_reference.py: frequency tables,
no rows of the demo), so no demo is needed; --demo-dir / load_reference(folder),
or $MIMIC_DEMO_DIR when it holds the demo, learns them from a demo at run time
instead. Nothing of the demo is copied: the ICD-9 dictionaries are made for the
codes drawn, with titles that only name the code ("Diagnosis 4019"), and each
prescription's drug columns are drawn one by one from their frequencies.

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
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

try:
    from . import dbutil, learn_reference
except ImportError:  # run as a script
    import dbutil
    import learn_reference

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
REFERENCE_PATH = learn_reference.REFERENCE_PATH
# The seed of the prescription drug lines drawn once from the statistics.
RX_LINES_SEED = "fhir-river-synthetic/prescription-drug-lines"
FIRST_DAY = date(2100, 1, 1).toordinal()
SPAN_DAYS = 100 * 365
DAY = 86400


# --------------------------------------------------------------------------- #
# What the demo teaches (through its statistics: learn_reference.py)
# --------------------------------------------------------------------------- #
@dataclass
class Reference:
    """Empirical distributions measured on the demo: lists to draw from (a value
    repeated as often as the demo has it), and the rows of the dictionaries."""

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
    source: str = ""


def _expand(pairs: list[list]) -> list:
    """[[value, count], ...] -> the values, each repeated count times."""
    return [value for value, count in pairs for _ in range(count)]


_ICD_ALPHABET = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1)}


def dictionary_row_id(code: str) -> int:
    """The row_id of a code's dictionary row: a function of the code alone (ICD-9
    codes have at most 5 characters), so that rows made by any version of the
    statistics agree, above MIMIC's row_ids."""
    if not 0 < len(code) <= 5:
        raise ValueError(f"{code!r} is not an ICD-9 code (1 to 5 characters)")
    value = 0
    for c in code.upper().ljust(5, " "):
        value = value * 37 + _ICD_ALPHABET.get(c, 0)
    return ROW_ID_BASE + value


def dictionary_rows(table: str, codes: Iterable[str]) -> list[tuple]:
    """Synthetic dictionary rows (row_id, icd9_code, short_title, long_title) for
    `codes`: the titles only name the code (no title is the demo's)."""
    kind = "diagnosis" if table == "d_icd_diagnoses" else "procedure"
    return [
        (dictionary_row_id(code), code, f"{kind.capitalize()} {code}",
         f"Synthetic ICD-9 {kind} {code}")
        for code in sorted(set(codes))
    ]  # fmt: skip


def _drug_lines(stats: dict) -> list[tuple]:
    """Prescription drug parts (COLUMNS["prescriptions"][6:]) drawn from the learned
    frequencies: as many lines of each drug as the demo has, the other columns
    drawn one by one from their frequencies among that drug's lines (among the
    rarer drugs' lines for a rare drug). The same lines for the same statistics."""
    rng = random.Random(RX_LINES_SEED)
    columns = COLUMNS["prescriptions"][6:]
    drawn_columns = [c for c in columns if c != "drug"]
    lines: list[tuple] = []
    for drug, n in stats["drug"]:
        tables = stats["by_drug"].get(drug) or stats["other_drugs"]
        drawn = {"drug": [drug] * n}
        for c in drawn_columns:
            values = [v for v, _w in tables[c]]
            weights = [w for _v, w in tables[c]]
            drawn[c] = rng.choices(values, weights, k=n)
        lines.extend(zip(*(drawn[c] for c in columns), strict=True))
    return lines


def reference_from_stats(stats: dict, source: str = "") -> Reference:
    """The Reference of statistics made by learn_reference.learn (or read from the
    file it writes)."""
    if stats.get("version") != learn_reference.VERSION:
        raise ValueError(
            f"the statistics of {source or 'the reference'} are of version"
            f" {stats.get('version')}, not {learn_reference.VERSION}: write them again with"
            " test/utils/learn_reference.py"
        )
    patients, admissions, rx = stats["patients"], stats["admissions"], stats["prescriptions"]
    ref = Reference(source=source)
    ref.genders = _expand(patients["gender"])
    ref.age_days = _expand(patients["age_days"])
    ref.admissions_per_patient = _expand(patients["admissions_per_patient"])
    ref.los_minutes = _expand(admissions["los_minutes"])
    ref.admission = {c: _expand(pairs) for c, pairs in admissions["columns"].items()}
    ref.discharge_alive = _expand(admissions["discharge_alive"])
    ref.per_admission = {t: _expand(pairs) for t, pairs in stats["per_admission"].items()}
    for table, dictionary in (
        ("diagnoses_icd", "d_icd_diagnoses"),
        ("procedures_icd", "d_icd_procedures"),
    ):
        codes = stats["codes"][table]
        used = _expand(codes["frequencies"])
        missing = set(codes["not_in_dictionary"])
        rows = dictionary_rows(
            dictionary, (c for c, _n in codes["frequencies"] if c not in missing)
        )
        if table == "diagnoses_icd":
            ref.diagnosis_codes = used
        else:
            ref.procedure_codes = used
        ref.dictionary[dictionary] = rows
        ref.dictionary_codes[dictionary] = [r[1] for r in rows]
    ref.rx_templates = _drug_lines(rx)
    ref.rx_template_csv = [csv_text([t]).removesuffix("\r\n") for t in ref.rx_templates]
    ref.rx_start_offsets = _expand(rx["start_offset_days"])
    ref.rx_durations = _expand(rx["duration_days"])
    with_icustay, lines = rx["icustay_share"]
    ref.rx_icustay_share = with_icustay / max(1, lines)
    ref.services = _expand(stats["services"]["curr_service"])
    ref.icu = {
        "dbsource": _expand(stats["icustays"]["dbsource"]),
        "careunit": _expand(stats["icustays"]["careunit"]),
        "wardid": _expand(stats["icustays"]["wardid"]),
        "los_minutes": _expand(stats["icustays"]["los_minutes"]),
        "changes_unit": _expand(stats["icustays"]["changes_unit"]),
    }
    ref.caregivers = [tuple(pair) for pair in _expand(stats["caregivers"]["label_description"])]
    return ref


@lru_cache(maxsize=4)
def _learned(folder: str) -> Reference:
    return reference_from_stats(learn_reference.learn(folder), source=folder)


@lru_cache(maxsize=2)
def _shipped(path: str) -> Reference:
    try:
        stats = learn_reference.decode(Path(path).read_bytes())
    except (OSError, EOFError, ValueError) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(
            f"{path} cannot be read ({exc}): restore it (git checkout) or write it again"
            " with test/utils/learn_reference.py"
        ) from exc
    return reference_from_stats(stats, source=path)


def load_reference(folder: str | Path | None = None) -> Reference:
    """What the generator draws from (cached). Learned from the MIMIC-III demo in
    `folder` when one is given (--demo-dir: it must hold the demo), else in
    $MIMIC_DEMO_DIR when that holds the demo, else read from the statistics shipped
    in REFERENCE_PATH (the default: no demo needed). Without that file, the demo
    shipped in test/data/mimic-iii-demo is the last resort."""
    if folder is not None:
        return _learned(str(Path(folder).resolve()))
    env = os.environ.get("MIMIC_DEMO_DIR")
    if env and learn_reference.holds_demo(env):
        return _learned(str(Path(env).resolve()))
    if REFERENCE_PATH.is_file():
        return _shipped(str(REFERENCE_PATH))
    if learn_reference.holds_demo(dbutil.DEFAULT_DEMO_DIR):
        return _learned(str(dbutil.DEFAULT_DEMO_DIR.resolve()))
    raise FileNotFoundError(
        f"{REFERENCE_PATH} is missing and no MIMIC-III demo was found: restore the file"
        " (git checkout) or point --demo-dir or $MIMIC_DEMO_DIR at the demo"
    )


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


def _icd_rows(rng: random.Random, skeleton, table: str, codes: list[str], ids: IdStart,
              generate: bool):  # fmt: skip
    """Codes drawn with the demo's frequencies (those its dictionary lacks included)."""
    out: list[tuple] = []
    row_id = ids.row_id[table]
    choices = rng.choices
    for subject_id, stays in skeleton:
        for stay in stays:
            k = stay.counts[table]
            if generate:
                for seq, code in enumerate(choices(codes, k=k), 1):
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
        for table, codes in (
            ("diagnoses_icd", ref.diagnosis_codes),
            ("procedures_icd", ref.procedure_codes),
        ):
            generated = _icd_rows(stream(table), skeleton, table, codes, ids, table in wanted)
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
