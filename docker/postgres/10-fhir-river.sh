#!/usr/bin/env bash
# Init script of the Compose stack's PostgreSQL (official postgres image: the
# files of /docker-entrypoint-initdb.d run once, on an empty data volume, as the
# superuser POSTGRES_USER). POSTGRES_DB (the source database, `mimic`) exists
# already; this makes the services' roles, each with its password from the
# environment (docker-compose.yml requires them all), and the FHIR store's database:
#
#   river_source_reader  SELECT on the source's tables (the extractor, the API)
#   river_source_cdc     REPLICATION, SELECT on the source's tables (Debezium)
#   river_source_owner   owns the source's tables (the seed)
#   river_store          owns the fhirstore database (a PostgreSQL store)
#
# The MIMIC schema follows (20-mimic-schema.sql, mounted from
# test/utils/mimic_schema.sql), then 30-fhir-river-source.sh gives the source's
# tables to their owner, grants the readers and makes Debezium's publication; the
# `seed` service writes example data. No role but the superuser may connect to a
# database it is not granted.
# Written to work whether the entrypoint runs it or sources it: no `exit`.
set -eo pipefail

fhirstore_db="${FHIRSTORE_DB_NAME:-fhirstore}"
echo "fhir-river: roles river_source_reader, river_source_cdc, river_source_owner, river_store"
# The passwords reach psql through its environment (\getenv), not its command line
# (which ps shows); psql fills :'name' as a quoted literal and does not echo it.
: "${SOURCE_READER_PASSWORD:?set SOURCE_READER_PASSWORD}" "${SOURCE_CDC_PASSWORD:?set SOURCE_CDC_PASSWORD}"
: "${SOURCE_OWNER_PASSWORD:?set SOURCE_OWNER_PASSWORD}" "${STORE_OWNER_PASSWORD:?set STORE_OWNER_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\getenv reader_password SOURCE_READER_PASSWORD
\getenv cdc_password SOURCE_CDC_PASSWORD
\getenv owner_password SOURCE_OWNER_PASSWORD
\getenv store_password STORE_OWNER_PASSWORD
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r.name, r.password)
FROM (VALUES ('river_source_reader', :'reader_password'),
             ('river_source_owner', :'owner_password'),
             ('river_store', :'store_password')) AS r (name, password)
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name)\gexec
-- Logical replication: REPLICATION, nothing more (no superuser, no table of its own).
SELECT format('CREATE ROLE %I LOGIN REPLICATION PASSWORD %L', 'river_source_cdc', :'cdc_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'river_source_cdc')\gexec
SQL

echo "fhir-river: creating database ${fhirstore_db} (owner river_store)"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set db="$fhirstore_db" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER river_store', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db')\gexec
SQL
