-- MIMIC-III schema of the 16 tables of the MIMIC-III Clinical Database Demo
-- (test/data/mimic-iii-demo), for PostgreSQL. Column names are the CSV
-- headers, in the same order. Idempotent: run it as often as you like
--   psql -v ON_ERROR_STOP=1 -d mimic -f test/utils/mimic_schema.sql
--
-- Types (checked against every value of the demo):
--   integer            *_id, row_id, seq_num, flags, counts, ward ids, cgid, itemid
--   timestamp          *time, *date, dob, dod*
--   double precision   measured values (los, dilution_value). Double rather than
--                      numeric: drivers read it as a float, which JSON events carry
--                      as they are (numeric would come back as Decimal).
--   text               the rest, including codes with leading zeros (icd9_code,
--                      ndc, gsn, drg_code, cpt_cd) and the prescription doses
--                      (dose_val_rx, form_val_disp hold ranges such as "1-2").
-- Keys: row_id is the primary key of every table; the natural key of the table
-- that owns it is unique (patients.subject_id, admissions.hadm_id,
-- icustays.icustay_id, caregivers.cgid, d_labitems.itemid, d_icd_*.icd9_code);
-- subject_id, hadm_id, icustay_id and icd9_code are indexed wherever they appear.

SET client_min_messages = warning;

CREATE TABLE IF NOT EXISTS admissions (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    admittime timestamp,
    dischtime timestamp,
    deathtime timestamp,
    admission_type text,
    admission_location text,
    discharge_location text,
    insurance text,
    language text,
    religion text,
    marital_status text,
    ethnicity text,
    edregtime timestamp,
    edouttime timestamp,
    diagnosis text,
    hospital_expire_flag integer,
    has_chartevents_data integer
);
CREATE INDEX IF NOT EXISTS admissions_subject_id_idx ON admissions (subject_id);
CREATE UNIQUE INDEX IF NOT EXISTS admissions_hadm_id_idx ON admissions (hadm_id);

CREATE TABLE IF NOT EXISTS callout (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    submit_wardid integer,
    submit_careunit text,
    curr_wardid integer,
    curr_careunit text,
    callout_wardid integer,
    callout_service text,
    request_tele integer,
    request_resp integer,
    request_cdiff integer,
    request_mrsa integer,
    request_vre integer,
    callout_status text,
    callout_outcome text,
    discharge_wardid integer,
    acknowledge_status text,
    createtime timestamp,
    updatetime timestamp,
    acknowledgetime timestamp,
    outcometime timestamp,
    firstreservationtime timestamp,
    currentreservationtime timestamp
);
CREATE INDEX IF NOT EXISTS callout_subject_id_idx ON callout (subject_id);
CREATE INDEX IF NOT EXISTS callout_hadm_id_idx ON callout (hadm_id);

CREATE TABLE IF NOT EXISTS caregivers (
    row_id integer PRIMARY KEY,
    cgid integer,
    label text,
    description text
);
CREATE UNIQUE INDEX IF NOT EXISTS caregivers_cgid_idx ON caregivers (cgid);

CREATE TABLE IF NOT EXISTS cptevents (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    costcenter text,
    chartdate timestamp,
    cpt_cd text,
    cpt_number integer,
    cpt_suffix text,
    ticket_id_seq integer,
    sectionheader text,
    subsectionheader text,
    description text
);
CREATE INDEX IF NOT EXISTS cptevents_subject_id_idx ON cptevents (subject_id);
CREATE INDEX IF NOT EXISTS cptevents_hadm_id_idx ON cptevents (hadm_id);

CREATE TABLE IF NOT EXISTS d_icd_diagnoses (
    row_id integer PRIMARY KEY,
    icd9_code text,
    short_title text,
    long_title text
);
CREATE UNIQUE INDEX IF NOT EXISTS d_icd_diagnoses_icd9_code_idx ON d_icd_diagnoses (icd9_code);

CREATE TABLE IF NOT EXISTS d_icd_procedures (
    row_id integer PRIMARY KEY,
    icd9_code text,
    short_title text,
    long_title text
);
CREATE UNIQUE INDEX IF NOT EXISTS d_icd_procedures_icd9_code_idx ON d_icd_procedures (icd9_code);

CREATE TABLE IF NOT EXISTS d_labitems (
    row_id integer PRIMARY KEY,
    itemid integer,
    label text,
    fluid text,
    category text,
    loinc_code text
);
CREATE UNIQUE INDEX IF NOT EXISTS d_labitems_itemid_idx ON d_labitems (itemid);

CREATE TABLE IF NOT EXISTS diagnoses_icd (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    seq_num integer,
    icd9_code text
);
CREATE INDEX IF NOT EXISTS diagnoses_icd_subject_id_idx ON diagnoses_icd (subject_id);
CREATE INDEX IF NOT EXISTS diagnoses_icd_hadm_id_idx ON diagnoses_icd (hadm_id);
CREATE INDEX IF NOT EXISTS diagnoses_icd_icd9_code_idx ON diagnoses_icd (icd9_code);

CREATE TABLE IF NOT EXISTS drgcodes (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    drg_type text,
    drg_code text,
    description text,
    drg_severity integer,
    drg_mortality integer
);
CREATE INDEX IF NOT EXISTS drgcodes_subject_id_idx ON drgcodes (subject_id);
CREATE INDEX IF NOT EXISTS drgcodes_hadm_id_idx ON drgcodes (hadm_id);

CREATE TABLE IF NOT EXISTS icustays (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    icustay_id integer,
    dbsource text,
    first_careunit text,
    last_careunit text,
    first_wardid integer,
    last_wardid integer,
    intime timestamp,
    outtime timestamp,
    los double precision
);
CREATE INDEX IF NOT EXISTS icustays_subject_id_idx ON icustays (subject_id);
CREATE INDEX IF NOT EXISTS icustays_hadm_id_idx ON icustays (hadm_id);
CREATE UNIQUE INDEX IF NOT EXISTS icustays_icustay_id_idx ON icustays (icustay_id);

CREATE TABLE IF NOT EXISTS microbiologyevents (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    chartdate timestamp,
    charttime timestamp,
    spec_itemid integer,
    spec_type_desc text,
    org_itemid integer,
    org_name text,
    isolate_num integer,
    ab_itemid integer,
    ab_name text,
    dilution_text text,
    dilution_comparison text,
    dilution_value double precision,
    interpretation text
);
CREATE INDEX IF NOT EXISTS microbiologyevents_subject_id_idx ON microbiologyevents (subject_id);
CREATE INDEX IF NOT EXISTS microbiologyevents_hadm_id_idx ON microbiologyevents (hadm_id);

CREATE TABLE IF NOT EXISTS patients (
    row_id integer PRIMARY KEY,
    subject_id integer,
    gender text,
    dob timestamp,
    dod timestamp,
    dod_hosp timestamp,
    dod_ssn timestamp,
    expire_flag integer
);
CREATE UNIQUE INDEX IF NOT EXISTS patients_subject_id_idx ON patients (subject_id);

CREATE TABLE IF NOT EXISTS prescriptions (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    icustay_id integer,
    startdate timestamp,
    enddate timestamp,
    drug_type text,
    drug text,
    drug_name_poe text,
    drug_name_generic text,
    formulary_drug_cd text,
    gsn text,
    ndc text,
    prod_strength text,
    dose_val_rx text,
    dose_unit_rx text,
    form_val_disp text,
    form_unit_disp text,
    route text
);
CREATE INDEX IF NOT EXISTS prescriptions_subject_id_idx ON prescriptions (subject_id);
CREATE INDEX IF NOT EXISTS prescriptions_hadm_id_idx ON prescriptions (hadm_id);
CREATE INDEX IF NOT EXISTS prescriptions_icustay_id_idx ON prescriptions (icustay_id);

CREATE TABLE IF NOT EXISTS procedures_icd (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    seq_num integer,
    icd9_code text
);
CREATE INDEX IF NOT EXISTS procedures_icd_subject_id_idx ON procedures_icd (subject_id);
CREATE INDEX IF NOT EXISTS procedures_icd_hadm_id_idx ON procedures_icd (hadm_id);
CREATE INDEX IF NOT EXISTS procedures_icd_icd9_code_idx ON procedures_icd (icd9_code);

CREATE TABLE IF NOT EXISTS services (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    transfertime timestamp,
    prev_service text,
    curr_service text
);
CREATE INDEX IF NOT EXISTS services_subject_id_idx ON services (subject_id);
CREATE INDEX IF NOT EXISTS services_hadm_id_idx ON services (hadm_id);

CREATE TABLE IF NOT EXISTS transfers (
    row_id integer PRIMARY KEY,
    subject_id integer,
    hadm_id integer,
    icustay_id integer,
    dbsource text,
    eventtype text,
    prev_careunit text,
    curr_careunit text,
    prev_wardid integer,
    curr_wardid integer,
    intime timestamp,
    outtime timestamp,
    los double precision
);
CREATE INDEX IF NOT EXISTS transfers_subject_id_idx ON transfers (subject_id);
CREATE INDEX IF NOT EXISTS transfers_hadm_id_idx ON transfers (hadm_id);
CREATE INDEX IF NOT EXISTS transfers_icustay_id_idx ON transfers (icustay_id);

-- A primary key dropped for a bulk load (create_records_db.py --replace drops the
-- keys and indexes of the tables it fills, and builds them again at the end) and
-- not put back, because the process was killed, comes back here; the indexes
-- above come back by themselves.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'admissions', 'callout', 'caregivers', 'cptevents', 'd_icd_diagnoses',
        'd_icd_procedures', 'd_labitems', 'diagnoses_icd', 'drgcodes', 'icustays',
        'microbiologyevents', 'patients', 'prescriptions', 'procedures_icd', 'services',
        'transfers'
    ] LOOP
        IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = t::regclass AND contype = 'p') THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (row_id)', t, t || '_pkey');
        END IF;
    END LOOP;
END
$$;
