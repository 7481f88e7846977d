#!/usr/bin/env bash
# Init script of the Compose stack's PostgreSQL, after the MIMIC schema
# (20-mimic-schema.sql): the source database's privileges, once, on an empty volume.
#
#   river_source_owner   owns every table of the schema public (the seed drops and
#                        restores constraints around its COPY), may make temp tables
#   river_source_reader  CONNECT, SELECT on every table, now and later (the extractor,
#                        the API)
#   river_source_cdc     CONNECT, SELECT likewise; the publication Debezium reads is
#                        made here, by the superuser, with REPLICA IDENTITY FULL on
#                        its tables: the connector (publication.autocreate.mode
#                        filtered, replica.identity.autoset.values) finds both as it
#                        wants them and alters nothing, so it needs no ownership.
#
# PUBLICATION and CDC_TABLES are those of
# kafka_connect_connectors/sources/mimic-postgres-cdc.json (publication.name,
# table.include.list); test/integration/test_compose.py checks they agree. A table
# of the list the schema lacks is left out, as Debezium leaves it out.
# Written to work whether the entrypoint runs it or sources it: no `exit`.
set -eo pipefail

source_db="${POSTGRES_DB:-mimic}"
publication=fhir_river_mimic
cdc_tables="patients admissions diagnoses_icd procedures_icd d_icd_diagnoses d_icd_procedures services prescriptions microbiologyevents labevents d_labitems caregivers icustays transfers"

echo "fhir-river: privileges on ${source_db}, publication ${publication}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$source_db" \
    --set db="$source_db" --set publication="$publication" --set tables="$cdc_tables" <<'SQL'
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db')\gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO river_source_owner', :'db')\gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO river_source_reader, river_source_cdc', :'db')\gexec

-- The tables (with their indexes and sequences) go to their owner.
SELECT format('ALTER TABLE %I.%I OWNER TO river_source_owner', schemaname, tablename)
FROM pg_tables WHERE schemaname = 'public'\gexec

GRANT USAGE ON SCHEMA public TO river_source_reader, river_source_cdc;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO river_source_reader, river_source_cdc;
ALTER DEFAULT PRIVILEGES FOR ROLE river_source_owner IN SCHEMA public
    GRANT SELECT ON TABLES TO river_source_reader, river_source_cdc;

-- Debezium's publication: the listed tables that exist, each with its full row in
-- the WAL for updates and deletes.
SELECT format('ALTER TABLE public.%I REPLICA IDENTITY FULL', t.name)
FROM unnest(string_to_array(:'tables', ' ')) AS t (name)
WHERE to_regclass(format('public.%I', t.name)) IS NOT NULL\gexec
SELECT format('CREATE PUBLICATION %I FOR TABLE %s', :'publication',
              string_agg(format('public.%I', t.name), ', ' ORDER BY t.name))
FROM unnest(string_to_array(:'tables', ' ')) AS t (name)
WHERE to_regclass(format('public.%I', t.name)) IS NOT NULL
HAVING count(*) > 0
   AND NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = :'publication')\gexec
SQL
